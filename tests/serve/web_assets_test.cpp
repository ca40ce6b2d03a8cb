#include "hearth/serve/web_assets.hpp"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>

#include "support/fixtures.hpp"

namespace hearth::serve {
namespace {

std::string read_source(const std::string& name) {
  std::ifstream in(testing::source_dir() / "src/hearth/serve/web" / name, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

TEST(WebAssets, RootIsThePage) {
  const auto root = web_asset("/");
  ASSERT_TRUE(root.has_value());
  EXPECT_EQ(root->content_type, "text/html; charset=utf-8");
  EXPECT_NE(root->body.find("<script src=\"app.js\"></script>"), std::string_view::npos);
  const auto index = web_asset("/index.html");
  ASSERT_TRUE(index.has_value());
  EXPECT_EQ(index->body.data(), root->body.data());
}

TEST(WebAssets, EmbedsTheFilesByteForByte) {
  for (const char* name : {"index.html", "app.js", "style.css"}) {
    const auto asset = web_asset(std::string("/") + name);
    ASSERT_TRUE(asset.has_value()) << name;
    const std::string source = read_source(name);
    ASSERT_FALSE(source.empty()) << name;
    EXPECT_EQ(asset->body, source) << name;
  }
  EXPECT_EQ(web_asset("/app.js")->content_type, "text/javascript; charset=utf-8");
  EXPECT_EQ(web_asset("/style.css")->content_type, "text/css; charset=utf-8");
}

TEST(WebAssets, AnyOtherPathIsNotFound) {
  for (const char* path : {"", "/x", "index.html", "//index.html", "/../index.html", "/app.js?v=1",
                           "/APP.JS", "/style.css/", "/web/app.js", "/v1/models"})
    EXPECT_FALSE(web_asset(path).has_value()) << path;
  EXPECT_FALSE(web_asset(std::string_view("/app.js\0x", 9)).has_value());
}

}  // namespace
}  // namespace hearth::serve
