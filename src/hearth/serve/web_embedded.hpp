// The table that embed_web.cmake generates (web_assets_data.cpp in the build folder); read only by
// web_assets.cpp.
#pragma once

#include <cstddef>

namespace hearth::serve::detail {

struct EmbeddedFile {
  const char* name;  // file name inside src/hearth/serve/web/
  const unsigned char* data;
  std::size_t size;
};

extern const EmbeddedFile kEmbeddedFiles[];
extern const std::size_t kEmbeddedFileCount;

}  // namespace hearth::serve::detail
