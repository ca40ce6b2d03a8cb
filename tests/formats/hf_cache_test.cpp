// Resolving --model-id: paths as they are, repo ids in the local Hugging Face cache (refs,
// revisions, GGUF-only snapshots), and errors that say where hearth looked.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>

#include "hearth/core/error.hpp"
#include "hearth/formats/hf_cache.hpp"
#include "support/fixtures.hpp"

namespace fs = std::filesystem;

namespace hearth::formats {
namespace {

// Sets the cache variables for one test and restores them after.
class CacheEnv {
 public:
  CacheEnv() {
    for (const char* n : kNames) {
      const char* v = std::getenv(n);
      saved_.emplace_back(v != nullptr ? std::optional<std::string>(v) : std::nullopt);
      unsetenv(n);
    }
  }
  ~CacheEnv() {
    for (std::size_t i = 0; i < saved_.size(); ++i) {
      if (saved_[i]) {
        setenv(kNames[i], saved_[i]->c_str(), 1);
      } else {
        unsetenv(kNames[i]);
      }
    }
  }

 private:
  static constexpr const char* kNames[] = {"HF_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME", "HOME"};
  std::vector<std::optional<std::string>> saved_;
};

void touch(const fs::path& p, const std::string& text = "{}") {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << text;
}

// models--org--name with refs/main -> snapshots/<commit>/ holding files.
fs::path make_repo(const fs::path& hub, const std::string& org, const std::string& name,
                   const std::string& commit, std::initializer_list<const char*> files) {
  const fs::path repo = hub / ("models--" + org + "--" + name);
  touch(repo / "refs" / "main", commit + "\n");
  for (const char* f : files) touch(repo / "snapshots" / commit / f);
  return repo / "snapshots" / commit;
}

std::string error_of(const std::string& spec) {
  try {
    resolve_model(spec);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(HfCache, ExistingPathsAreReturnedAsTheyAre) {
  hearth::testing::TempDir dir;
  touch(dir / "model.gguf");
  EXPECT_EQ(resolve_model((dir / "model.gguf").string()), dir / "model.gguf");
  EXPECT_EQ(resolve_model(dir.path().string()), dir.path());
}

TEST(HfCache, RepoIdsResolveThroughRefsMainInHfHubCache) {
  CacheEnv env;
  hearth::testing::TempDir dir;
  const fs::path snap = make_repo(dir / "hub", "mlx-community", "Phi-3-mini-4k-instruct-4bit",
                                  "0123abcd", {"config.json", "model.safetensors"});
  make_repo(dir / "hub", "mlx-community", "Other", "ffff", {"config.json"});
  setenv("HF_HUB_CACHE", (dir / "hub").c_str(), 1);
  EXPECT_EQ(resolve_model("mlx-community/Phi-3-mini-4k-instruct-4bit"), snap);
  EXPECT_EQ(hf_hub_cache(), dir / "hub");
}

TEST(HfCache, TheCacheFolderFollowsHfHomeThenXdgThenHome) {
  CacheEnv env;
  hearth::testing::TempDir dir;
  setenv("HOME", (dir / "home").c_str(), 1);
  EXPECT_EQ(hf_hub_cache(), dir / "home/.cache/huggingface/hub");
  setenv("XDG_CACHE_HOME", (dir / "xdg").c_str(), 1);
  EXPECT_EQ(hf_hub_cache(), dir / "xdg/huggingface/hub");
  setenv("HF_HOME", (dir / "hf").c_str(), 1);
  EXPECT_EQ(hf_hub_cache(), dir / "hf/hub");
  const fs::path snap = make_repo(dir / "hf/hub", "org", "name", "c0ffee", {"config.json"});
  EXPECT_EQ(resolve_model("org/name"), snap);
}

TEST(HfCache, RevisionsAndFilesOfASnapshot) {
  CacheEnv env;
  hearth::testing::TempDir dir;
  setenv("HF_HUB_CACHE", dir.path().c_str(), 1);
  make_repo(dir.path(), "org", "m", "aaaa", {"config.json"});
  touch(dir / "models--org--m/refs/v2", "bbbb");
  touch(dir / "models--org--m/snapshots/bbbb/config.json");
  EXPECT_EQ(resolve_model("org/m@v2"), dir / "models--org--m/snapshots/bbbb");
  EXPECT_EQ(resolve_model("org/m@aaaa"), dir / "models--org--m/snapshots/aaaa");
  // A GGUF repo: the one .gguf file, or the one named when there are several.
  const fs::path one = make_repo(dir.path(), "org", "g", "1111", {"m-Q4_K_M.gguf", "README.md"});
  EXPECT_EQ(resolve_model("org/g"), one / "m-Q4_K_M.gguf");
  make_repo(dir.path(), "org", "two", "2222", {"a-f16.gguf", "a-q8_0.gguf"});
  EXPECT_NE(error_of("org/two").find("a-f16.gguf, a-q8_0.gguf"), std::string::npos)
      << error_of("org/two");
  EXPECT_EQ(resolve_model("org/two/a-q8_0.gguf"),
            dir / "models--org--two/snapshots/2222/a-q8_0.gguf");
}

TEST(HfCache, MissingModelsSayWhereHearthLookedAndThatItNeverDownloads) {
  CacheEnv env;
  hearth::testing::TempDir dir;
  setenv("HF_HUB_CACHE", dir.path().c_str(), 1);
  const std::string e = error_of("mlx-community/Phi-3-mini-4k-instruct-4bit");
  EXPECT_NE(e.find((dir / "models--mlx-community--Phi-3-mini-4k-instruct-4bit").string()),
            std::string::npos)
      << e;
  EXPECT_NE(e.find("$HF_HUB_CACHE"), std::string::npos) << e;
  EXPECT_NE(e.find("never downloads"), std::string::npos) << e;
  make_repo(dir.path(), "org", "m", "aaaa", {"config.json"});
  EXPECT_NE(error_of("org/m@nope").find("no snapshot for revision 'nope'"), std::string::npos);
  EXPECT_NE(error_of("./no/such/model").find("no such file or folder"), std::string::npos);
  EXPECT_NE(error_of("org/../etc").find("no such file or folder"), std::string::npos);
  EXPECT_NE(error_of("").find("empty"), std::string::npos);
}

}  // namespace
}  // namespace hearth::formats
