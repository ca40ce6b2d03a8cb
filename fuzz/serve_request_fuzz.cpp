// Fuzz target: hearth-server's request parsers (serve/api.hpp) on arbitrary bytes. Every parser
// sees every input; a refusal must be a 400 with a message, anything else (a crash, a sanitizer
// report, an exception escaping, a hang) is a bug.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "fuzz/touch.hpp"
#include "hearth/models/flux_pipeline.hpp"
#include "hearth/serve/api.hpp"

namespace {

template <class T>
void check(const hearth::serve::Parsed<T>& p) {
  if (!p.ok() && (p.error.status != 400 || p.error.message.empty())) std::abort();
  hearth::fuzz::consume(hearth::serve::error_body(p.error).size());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  namespace s = hearth::serve;
  const auto chat = s::parse_chat_request(body);
  check(chat);
  if (chat.ok()) {
    for (const auto& m : chat.value->messages) hearth::fuzz::consume(m.content.size());
  }
  check(s::parse_completion_request(body));
  check(s::parse_embedding_request(body));
  check(s::parse_rerank_request(body));
  check(s::parse_bank_search_request(body));
  const auto upload = s::parse_upload_request(body);
  check(upload);
  if (upload.ok()) {
    for (const auto& f : upload.value->files) {
      if (!s::is_safe_name(f.name)) std::abort();
    }
  }
  check(s::parse_remove_request(body));
  const auto image = s::parse_image_request(body);
  check(image);
  if (image.ok()) {
    const auto& r = *image.value;
    // What the server hands the pipeline must be inside its limits.
    if (r.prompt.empty() || r.prompt.size() > s::Limits{}.max_prompt_bytes || r.n < 1 ||
        r.n > s::Limits{}.max_images || r.width % 16 != 0 || r.height % 16 != 0 || r.width < 16 ||
        r.height < 16 || r.width * r.height > hearth::models::kFluxMaxPixels) {
      std::abort();
    }
  }
  if (const auto decoded = s::base64_decode(body)) {
    if (s::base64_encode(*decoded) != body) std::abort();
  }
  return 0;
}
