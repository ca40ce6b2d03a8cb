#include "hearth/serve/web_assets.hpp"

#include "hearth/serve/web_embedded.hpp"

namespace hearth::serve {
namespace {

std::string_view content_type(std::string_view name) {
  const auto dot = name.rfind('.');
  const std::string_view ext = dot == std::string_view::npos ? "" : name.substr(dot + 1);
  if (ext == "html") return "text/html; charset=utf-8";
  if (ext == "js") return "text/javascript; charset=utf-8";
  if (ext == "css") return "text/css; charset=utf-8";
  if (ext == "svg") return "image/svg+xml";
  if (ext == "png") return "image/png";
  return "application/octet-stream";
}

}  // namespace

std::optional<WebAsset> web_asset(std::string_view path) {
  if (path == "/") path = "/index.html";
  if (path.size() < 2 || path.front() != '/') return std::nullopt;
  const std::string_view name = path.substr(1);
  for (std::size_t i = 0; i < detail::kEmbeddedFileCount; ++i) {
    const auto& file = detail::kEmbeddedFiles[i];
    if (name == file.name)
      return WebAsset{content_type(name),
                      std::string_view(reinterpret_cast<const char*>(file.data), file.size)};
  }
  return std::nullopt;
}

}  // namespace hearth::serve
