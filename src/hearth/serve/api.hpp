// hearth-server's HTTP API without the HTTP: the request types of the OpenAI-compatible routes
// (and hearth's bank routes), their parsers, which take the body's bytes and give a checked
// request or an error in OpenAI's error-object shape (so they can be fuzzed), and the JSON of
// the responses.
//
// Parsing rules: the body must be one JSON object (valid UTF-8, nested at most Limits::max_depth
// deep); every known field is checked for its type and range and a wrong one is a 400 naming it
// (`param`); unknown fields are ignored, as llama-server and OpenAI-compatible servers do (clients
// send vendor extensions); known OpenAI fields hearth cannot honour (n > 1, logprobs, tools,
// non-text content parts) are a 400 saying so rather than silently dropped.
#pragma once

#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "hearth/models/generate.hpp"
#include "hearth/models/sampler.hpp"
#include "hearth/tokenize/chat_template.hpp"

namespace hearth::serve {

// An error as OpenAI writes it: {"error": {"message", "type", "param", "code"}} with the status.
struct ApiError {
  int status = 400;
  std::string message;
  std::string type = "invalid_request_error";
  std::string param;  // the offending field ("" = null)
  std::string code;   // a machine-readable code ("" = null)
};
nlohmann::json error_json(const ApiError& e);
std::string error_body(const ApiError& e);

ApiError bad_request(std::string message, std::string param = "");
ApiError not_found(std::string message, std::string code = "not_found");
ApiError unauthorized();
ApiError too_large(std::size_t limit);
ApiError busy(std::string message);
ApiError unavailable(std::string message);
ApiError internal_error(std::string message);

// What a request may ask for.
struct Limits {
  std::size_t max_depth = 64;        // JSON nesting
  std::int64_t max_tokens = 4096;    // max_tokens / max_completion_tokens ceiling
  std::size_t max_messages = 1024;   // chat messages
  std::size_t max_stop = 4;          // stop strings (OpenAI's limit)
  std::size_t max_stop_bytes = 256;  // each
  std::size_t max_inputs = 512;      // embedding inputs, rerank documents
  std::size_t max_top_k = 100;       // bank search results
  std::size_t max_files = 64;        // documents in one upload
  std::size_t max_name_bytes = 200;  // a document's file name

  // POST /v1/images/generations
  std::int64_t max_images = 4;           // images in one request ("n")
  std::int64_t max_image_steps = 100;    // its "steps"
  std::size_t max_prompt_bytes = 32000;  // its "prompt" (OpenAI's gpt-image-1 limit, in bytes)
};

// The parsed request, or the error to answer with.
template <class T>
struct Parsed {
  std::optional<T> value;
  ApiError error;
  bool ok() const { return value.has_value(); }
};

// Sampling and limits shared by chat and text completions.
struct GenerationRequest {
  std::string model;  // "" when absent
  models::SamplingParams sampling;
  bool seeded = false;                     // seed given (else the server draws one)
  std::optional<std::int64_t> max_tokens;  // max_completion_tokens or max_tokens
  std::vector<std::string> stop;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
};

struct ChatRequest : GenerationRequest {
  std::vector<tokenize::ChatMessage> messages;
  std::string bank;  // hearth's extension: answer over this knowledge bank, with citations
  std::size_t bank_top_k = 5;  // "bank_top_k": passages retrieved for it
};

struct CompletionRequest : GenerationRequest {
  std::string prompt;                    // text (tokenized with the model's BOS rule)
  std::vector<std::int32_t> prompt_ids;  // or token ids given as such
};

struct EmbeddingRequest {
  std::string model;
  std::vector<std::string> input;
  bool base64 = false;  // encoding_format "base64": little-endian float32 bytes
};

struct RerankRequest {
  std::string model;
  std::string query;
  std::vector<std::string> documents;
  std::optional<std::size_t> top_n;
  bool return_documents = true;
};

struct BankSearchRequest {
  std::string query;
  std::size_t top_k = 5;
  std::string mode = "auto";  // auto, bm25, dense, hybrid
};

struct UploadedFile {
  std::string name;   // a plain file name (is_safe_name)
  std::string bytes;  // "content" (text) or "content_base64" decoded
};
struct UploadRequest {
  std::vector<UploadedFile> files;
};

struct RemoveRequest {
  std::vector<std::string> paths;  // document paths exactly as GET .../documents lists them
};

// POST /v1/images/generations: OpenAI's fields (prompt, model, n, size, response_format) and
// hearth's (seed, steps, guidance, t5_max_length). size is "WxH" (or "auto": the default), each
// side a multiple of 16 from 16 to models::kFluxMaxSide, at most models::kFluxMaxPixels in all;
// response_format only "b64_json" (nothing is hosted for "url"); output_format only "png"; no
// streaming.
inline constexpr std::int64_t kDefaultImageSide = 512;
struct ImageRequest {
  std::string model;
  std::string prompt;
  int n = 1;
  std::int64_t width = kDefaultImageSide, height = kDefaultImageSide;
  std::optional<std::uint64_t> seed;         // image k gets seed + k; absent: the server draws one
  std::optional<int> steps;                  // absent: the pipeline's default (4 schnell, 28 dev)
  std::optional<float> guidance;             // FLUX.1-dev only
  std::optional<std::size_t> t5_max_length;  // T5 prompt tokens, 2..512 (as flux-cli's)
};

Parsed<ChatRequest> parse_chat_request(std::string_view body, const Limits& limits = {});
Parsed<CompletionRequest> parse_completion_request(std::string_view body,
                                                   const Limits& limits = {});
Parsed<EmbeddingRequest> parse_embedding_request(std::string_view body, const Limits& limits = {});
Parsed<RerankRequest> parse_rerank_request(std::string_view body, const Limits& limits = {});
Parsed<BankSearchRequest> parse_bank_search_request(std::string_view body,
                                                    const Limits& limits = {});
Parsed<UploadRequest> parse_upload_request(std::string_view body, const Limits& limits = {});
Parsed<RemoveRequest> parse_remove_request(std::string_view body, const Limits& limits = {});
Parsed<ImageRequest> parse_image_request(std::string_view body, const Limits& limits = {});

// A bank or document name that cannot leave its folder: 1..max bytes of valid UTF-8, no '/',
// '\\', NUL or other control characters, not "." or ".." or starting with '.', no glob
// characters (* ? [ ]).
bool is_safe_name(std::string_view name, std::size_t max_bytes = 200);

// Standard base64 (RFC 4648, with padding). decode gives nullopt for anything malformed.
std::string base64_encode(std::string_view bytes);
std::optional<std::string> base64_decode(std::string_view text);

// OpenAI's finish_reason for a generation's end.
const char* finish_reason(models::FinishReason f);

struct Usage {
  std::size_t prompt_tokens = 0;
  std::size_t completion_tokens = 0;
};
nlohmann::json usage_json(const Usage& u);

// chat.completion / chat.completion.chunk / text_completion objects.
nlohmann::json chat_completion_json(const std::string& id, std::int64_t created,
                                    const std::string& model, const std::string& text,
                                    const char* finish, const Usage& usage);
// A streamed delta: role set on the first chunk, content when not empty, finish when ending.
nlohmann::json chat_chunk_json(const std::string& id, std::int64_t created,
                               const std::string& model, const std::string* role,
                               const std::string* content, const char* finish);
nlohmann::json completion_json(const std::string& id, std::int64_t created,
                               const std::string& model, const std::string& text,
                               const char* finish, const Usage& usage);
nlohmann::json completion_chunk_json(const std::string& id, std::int64_t created,
                                     const std::string& model, const std::string& text,
                                     const char* finish);
// The last chunk of a stream with stream_options.include_usage: no choices, the usage.
nlohmann::json usage_chunk_json(const std::string& id, const char* object, std::int64_t created,
                                const std::string& model, const Usage& usage);
// The images.generate response: {"created", "data": [{"b64_json", "seed"}], "size",
// "output_format": "png", "timings": {"queue_seconds", "generate_seconds", "per_image_seconds"}}
// ("seed" and "timings" are hearth's; OpenAI clients ignore them).
struct ImageTimings {
  double queue_seconds = 0.0;
  double generate_seconds = 0.0;
};
nlohmann::json images_json(std::int64_t created, const std::vector<std::string>& b64_png,
                           const std::vector<std::uint64_t>& seeds, std::int64_t width,
                           std::int64_t height, const ImageTimings& timings);
// One server-sent event: "data: <json>\n\n".
std::string sse(const nlohmann::json& j);

}  // namespace hearth::serve
