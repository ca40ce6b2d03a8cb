# cmake -DWEB_DIR=<dir> -DOUTPUT=<file.cpp> -P embed_web.cmake
# Writes every file of WEB_DIR (not its subfolders) into OUTPUT as byte arrays, with the table that
# web_embedded.hpp declares. Run by the build (src/CMakeLists.txt) whenever a file changes.
file(GLOB files RELATIVE ${WEB_DIR} ${WEB_DIR}/*)
list(SORT files)
set(arrays "")
set(table "")
set(count 0)
string(REPEAT "0x..," 24 line_of_bytes)  # CMake's regular expressions have no {n}
foreach(name IN LISTS files)
  if(IS_DIRECTORY ${WEB_DIR}/${name})
    continue()
  endif()
  if(NOT name MATCHES "^[A-Za-z0-9._-]+$")
    message(FATAL_ERROR "embed_web: ${WEB_DIR}/${name}: file names must be [A-Za-z0-9._-]")
  endif()
  file(READ ${WEB_DIR}/${name} hex HEX)
  string(LENGTH "${hex}" hex_length)
  math(EXPR size "${hex_length} / 2")
  # Two hex digits per byte -> "0x..,"; a trailing 0 keeps an empty file's array legal.
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
  string(REGEX REPLACE "(${line_of_bytes})" "\\1\n" bytes "${bytes}")
  string(APPEND arrays "const unsigned char file${count}[] = {\n${bytes}0};\n")
  string(APPEND table "    {\"${name}\", file${count}, ${size}},\n")
  math(EXPR count "${count} + 1")
endforeach()
if(count EQUAL 0)
  message(FATAL_ERROR "embed_web: no files in ${WEB_DIR}")
endif()
file(CONFIGURE OUTPUT ${OUTPUT}.tmp CONTENT "// Generated from src/hearth/serve/web/ by src/hearth/serve/embed_web.cmake: do not edit.
#include \"hearth/serve/web_embedded.hpp\"

namespace hearth::serve::detail {
namespace {
@arrays@
}  // namespace

const EmbeddedFile kEmbeddedFiles[] = {
@table@};
const std::size_t kEmbeddedFileCount = @count@;

}  // namespace hearth::serve::detail
" @ONLY)
# Only touch OUTPUT when it changed, so an unchanged page recompiles nothing.
file(COPY_FILE ${OUTPUT}.tmp ${OUTPUT} ONLY_IF_DIFFERENT)
file(REMOVE ${OUTPUT}.tmp)
