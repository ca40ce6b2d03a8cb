// Structural chunking time against text length, for text without spaces or punctuation (Chinese,
// base64, one huge paragraph of bare words) beside Latin prose, with the default 1000-character
// budget and with a 256-token budget counted by the all-MiniLM-L6-v2 tokenizer from the fixtures.
// Linear chunking shows the 160k time about four times the 40k time (the "x 40k" column).
//
// usage: hearth-bench-chunker [--tokenizer DIR] [--sizes 40000,80000,160000]
// DIR defaults to ../shared/fixtures/tokenizers/minilm beside the source tree; without it the
// token rows are skipped.
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "hearth/core/timer.hpp"
#include "hearth/rag/chunker.hpp"
#include "hearth/rag/loaders.hpp"
#include "hearth/tokenize/tokenizer.hpp"

namespace fs = std::filesystem;
using hearth::rag::ChunkingOptions;

namespace {

// n code points of each kind of text; a small LCG keeps the runs deterministic.
std::string make_text(const std::string& kind, std::size_t n) {
  std::string out;
  std::uint32_t state = 12345;
  auto next = [&] {
    state = state * 1664525u + 1013904223u;
    return state >> 8;
  };
  static const char* kWords[] = {"retrieval", "of", "the",   "dense", "passage", "bank", "model",
                                 "chunk",     "a",  "index", "query", "token",   "text", "search"};
  std::size_t chars = 0;
  while (chars < n) {
    if (kind == "latin-prose") {
      const std::string w = kWords[next() % 14];
      out += w;
      chars += w.size();
      const std::uint32_t r = next() % 12;
      out += r == 0 ? ". " : " ";
      chars += r == 0 ? 2 : 1;
    } else if (kind == "bare-words") {  // one paragraph, a word per line, no punctuation
      const std::string w = kWords[next() % 14];
      out += w + "\n";
      chars += w.size() + 1;
    } else if (kind == "chinese") {
      const std::uint32_t cp = 0x4E00 + next() % 0x5000;  // CJK unified ideographs, 3 bytes
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
      ++chars;
    } else {  // base64
      static const char kAlphabet[] =
          "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
      out += kAlphabet[next() % 64];
      ++chars;
    }
  }
  return out;
}

std::vector<std::size_t> parse_sizes(const std::string& s) {
  std::vector<std::size_t> out;
  std::size_t pos = 0;
  while (pos < s.size()) {
    const std::size_t comma = s.find(',', pos);
    out.push_back(std::stoul(s.substr(pos, comma - pos)));
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  fs::path tokenizer_dir = fs::path(HEARTH_SOURCE_DIR) / "../shared/fixtures/tokenizers/minilm";
  std::vector<std::size_t> sizes = {40000, 80000, 160000};
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--tokenizer") {
      tokenizer_dir = argv[i + 1];
    } else if (a == "--sizes") {
      sizes = parse_sizes(argv[i + 1]);
    } else {
      std::fprintf(stderr, "usage: %s [--tokenizer DIR] [--sizes 40000,80000,160000]\n", argv[0]);
      return 2;
    }
  }
  std::optional<hearth::tokenize::Tokenizer> tokenizer;
  if (fs::exists(tokenizer_dir / "tokenizer.json")) {
    tokenizer = hearth::tokenize::Tokenizer::load(tokenizer_dir);
  } else {
    std::fprintf(stderr, "note: no tokenizer at %s; token-budget rows skipped\n",
                 tokenizer_dir.string().c_str());
  }
  std::printf("| text | budget |");
  for (const std::size_t n : sizes) std::printf(" %zuk chars |", n / 1000);
  std::printf(" x %zuk |\n|---|---|", sizes.front() / 1000);
  for (std::size_t i = 0; i <= sizes.size(); ++i) std::printf("---|");
  std::printf("\n");
  for (const char* kind : {"latin-prose", "bare-words", "chinese", "base64"}) {
    for (const bool tokens : {false, true}) {
      if (tokens && !tokenizer) continue;
      std::printf("| %s | %s |", kind, tokens ? "256 tokens" : "1000 chars");
      double first = 0;
      double last = 0;
      for (const std::size_t n : sizes) {
        const hearth::rag::LoadedDocument doc = hearth::rag::parse_text(make_text(kind, n));
        hearth::rag::TokenCounter count;
        if (tokens) {
          count = [&](std::string_view s) { return tokenizer->encode(s, false).ids.size(); };
        }
        const ChunkingOptions options = tokens ? ChunkingOptions::tokens(256) : ChunkingOptions{};
        const hearth::Timer timer;
        const auto chunks = hearth::rag::chunk_document(doc, options, count);
        last = timer.seconds();
        if (first == 0) first = last;
        std::printf(" %.3f s (%zu) |", last, chunks.size());
        std::fflush(stdout);
      }
      std::printf(" %.1f |\n", last / first);
    }
  }
  return 0;
}
