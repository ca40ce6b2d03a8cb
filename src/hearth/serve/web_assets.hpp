// hearth-server's web page: the files of src/hearth/serve/web/ (plain HTML, CSS and JavaScript,
// no external assets), embedded into the library at build time by embed_web.cmake.
#pragma once

#include <optional>
#include <string_view>

namespace hearth::serve {

struct WebAsset {
  std::string_view content_type;  // e.g. "text/html; charset=utf-8"
  std::string_view body;          // the file's bytes, alive for the whole program
};

// The embedded file a GET of `path` serves: "/" and "/index.html" give the page, "/app.js" and
// "/style.css" its parts. Any other path (a query string included: pass the path alone) gives
// std::nullopt, for the caller to answer 404.
std::optional<WebAsset> web_asset(std::string_view path);

}  // namespace hearth::serve
