#include "llm_commands.hpp"

#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "hearth/cli/console.hpp"
#include "hearth/core/cancel.hpp"
#include "hearth/core/error.hpp"
#include "hearth/core/memory.hpp"
#include "hearth/core/timer.hpp"
#include "hearth/core/utf8.hpp"
#include "hearth/formats/hf_cache.hpp"
#include "hearth/formats/npy.hpp"
#include "hearth/models/chat.hpp"
#include "hearth/models/decoder.hpp"
#include "hearth/models/generate.hpp"

namespace hearth::apps {

namespace {

constexpr std::size_t kDefaultMaxTokens = 512;

void add_sampling_options(CLI::App* sub, LlmFlags& f) {
  sub->add_option("--system", f.system, "A system message that starts the conversation");
  sub->add_option("--temp", f.temperature, "Sampling temperature; 0 is greedy")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  sub->add_option("--top-k", f.top_k, "Sample among the K most likely tokens (0: off)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  sub->add_option("--top-p", f.top_p, "Nucleus sampling: the smallest set with this mass (1: off)")
      ->capture_default_str()
      ->check(CLI::Range(0.0f, 1.0f));
  sub->add_option("--min-p", f.min_p, "Drop tokens less likely than P x the top one (0: off)")
      ->capture_default_str()
      ->check(CLI::Range(0.0f, 1.0f));
  sub->add_option("--repeat-penalty", f.repetition_penalty,
                  "Penalty for tokens of the last 64 (1: off; 1.1 is common)")
      ->capture_default_str();
  sub->add_option("--seed", f.seed, "Random seed: the same seed and settings give the same text")
      ->capture_default_str();
  sub->add_option("--ctx", f.context,
                  "Context length in tokens (default: the model's, capped by memory)")
      ->check(CLI::NonNegativeNumber);
  sub->add_option("--stop", f.stop, "Stop when the text contains this string (repeat for more)")
      ->allow_extra_args(false);
  sub->add_option("--kv-cache", f.kv_cache, "KV cache element type: f16 or f32")
      ->capture_default_str()
      ->check(CLI::IsMember({"f16", "f32"}));
  sub->add_flag("--ignore-eos", f.ignore_eos,
                "Keep generating past the model's end tokens (for benchmarks)");
}

models::GenerateOptions generate_options(const LlmFlags& f, const LlmGlobals& g) {
  models::GenerateOptions o;
  o.sampling.temperature = f.temperature;
  o.sampling.top_k = f.top_k;
  o.sampling.top_p = f.top_p;
  o.sampling.min_p = f.min_p;
  o.sampling.repetition_penalty = f.repetition_penalty;
  o.sampling.seed = f.seed;
  o.sampling.validate();  // before the model loads
  o.max_tokens = static_cast<std::int64_t>(g.max_tokens > 0 ? g.max_tokens : kDefaultMaxTokens);
  o.stop = f.stop;
  o.stop_at_eos = !f.ignore_eos;
  return o;
}

std::unique_ptr<models::LanguageModel> load_model(const LlmFlags& f, const LlmGlobals& g) {
  if (g.model_id.empty()) {
    throw Error(ErrorCode::kInvalidArgument,
                "--model-id is required: a Hugging Face folder, a .gguf file, or a repo id in "
                "the local Hugging Face cache (e.g. mlx-community/Phi-3-mini-4k-instruct-4bit)");
  }
  models::LlmOptions o;
  o.threads = g.common.threads;
  o.kv_dtype = f.kv_cache == "f32" ? DType::kF32 : DType::kF16;
  o.context = f.context;
  auto model = models::LanguageModel::load(formats::resolve_model(g.model_id), o);
  if (!model->context_note().empty()) {
    std::fprintf(stderr, "rag-cli: note: %s\n", model->context_note().c_str());
  }
  return model;
}

double per_second(std::int64_t n, double seconds) {
  return seconds > 0.0 ? static_cast<double>(n) / seconds : 0.0;
}

nlohmann::json timings_json(const models::Timings& t, double load_seconds) {
  return {{"load_seconds", load_seconds},
          {"prefill_tokens", t.prefill_tokens},
          {"prefill_seconds", t.prefill_seconds},
          {"prefill_tokens_per_second", per_second(t.prefill_tokens, t.prefill_seconds)},
          {"decode_tokens", t.decode_tokens},
          {"decode_seconds", t.decode_seconds},
          {"decode_tokens_per_second", per_second(t.decode_tokens, t.decode_seconds)}};
}

// "57 tokens, 12.3 tokens/s; prompt 80 tokens (20 new), 250.1 tokens/s"
std::string timings_line(const models::Generation& gen) {
  const models::Timings& t = gen.timings;
  char buf[256];
  std::snprintf(
      buf, sizeof buf, "%zu tokens (%s), %.1f tokens/s; prompt %zu tokens (%zu new), %.1f tokens/s",
      gen.token_ids.size(), models::to_string(gen.finish),
      per_second(t.decode_tokens, t.decode_seconds), gen.prompt_tokens,
      gen.prompt_tokens - gen.reused_tokens, per_second(t.prefill_tokens, t.prefill_seconds));
  return buf;
}

std::vector<std::int32_t> raw_prompt_ids(const models::LanguageModel& model,
                                         const std::string& text) {
  // User text: special-token strings stay text (as llama.cpp's parse_special = false); BOS as
  // the model's tokenizer says.
  tokenize::EncodeOptions eo;
  eo.add_special_tokens = true;
  eo.parse_special = false;
  return model.tokenizer().encode(text, eo).ids;
}

int run_generate(const LlmFlags& f, const LlmGlobals& g) {
  if (f.raw && !f.system.empty()) {
    throw Error(ErrorCode::kInvalidArgument, "--system needs the chat template; drop --raw");
  }
  const Timer load;
  models::GenerateOptions options = generate_options(f, g);
  const auto model = load_model(f, g);
  const double load_seconds = load.seconds();

  std::vector<std::int32_t> prompt;
  std::string rendered = f.prompt;
  if (f.raw) {
    prompt = raw_prompt_ids(*model, f.prompt);
  } else {
    const models::ChatFormat format = models::ChatFormat::load(*model);
    std::vector<tokenize::ChatMessage> messages;
    if (!f.system.empty()) messages.push_back({"system", f.system});
    messages.push_back({"user", f.prompt});
    models::ChatFormat::Prompt p = format.prompt(messages, true);
    prompt = std::move(p.ids);
    rendered = std::move(p.text);
  }
  if (f.show_prompt) {
    std::fwrite(rendered.data(), 1, rendered.size(), stderr);
    std::fputc('\n', stderr);
  }

  std::vector<float> logits;
  if (!f.dump_logits.empty()) options.logits = &logits;
  models::Session session(*model);
  const bool stream = !g.json;
  const models::Generation gen =
      models::generate(session, prompt, options, [&](std::string_view piece) {
        if (!stream) return;
        std::fwrite(piece.data(), 1, piece.size(), stdout);
        std::fflush(stdout);
      });
  if (!f.dump_logits.empty()) {
    const auto vocab = static_cast<std::int64_t>(model->config().vocab);
    const std::int64_t shape[2] = {static_cast<std::int64_t>(logits.size()) / vocab, vocab};
    formats::write_npy_f32(f.dump_logits, logits, shape);
  }
  if (g.json) {
    nlohmann::json j{{"model", model->name()},
                     {"path", model->path().string()},
                     {"architecture", model->config().architecture},
                     {"prompt", rendered},
                     {"prompt_token_ids", prompt},
                     {"token_ids", gen.token_ids},
                     {"text", gen.text},
                     {"finish_reason", models::to_string(gen.finish)},
                     {"timings", timings_json(gen.timings, load_seconds)},
                     {"peak_rss_bytes", peak_rss_bytes()}};
    std::cout << j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  } else {
    std::fputs("\n", stdout);
    std::fprintf(stderr, "rag-cli: %s\n", timings_line(gen).c_str());
  }
  if (gen.finish == models::FinishReason::kCancelled) return exit_code_for(ErrorCode::kCancelled);
  return 0;
}

int run_chat(const LlmFlags& f, const LlmGlobals& g) {
  if (f.raw) throw Error(ErrorCode::kInvalidArgument, "chat always uses the chat template");
  const models::GenerateOptions options = generate_options(f, g);
  const auto model = load_model(f, g);
  models::Conversation chat(*model, 0, f.system.empty() ? std::nullopt : std::optional(f.system));
  std::fprintf(stderr,
               "Chatting with %s (%s, context %lld tokens). /reset forgets the conversation; "
               "Ctrl+C stops an answer; Ctrl+D leaves.\n",
               printable(model->name(), 120).c_str(), model->config().architecture.c_str(),
               static_cast<long long>(chat.session().context()));
  cli::LineReader reader(cli::history_file("rag-cli-chat"));
  for (;;) {
    const std::optional<std::string> line = reader.read("> ");
    if (!line) {
      std::fputs("\n", stdout);
      return cancel_requested() ? exit_code_for(ErrorCode::kCancelled) : 0;
    }
    if (line->find_first_not_of(" \t\r") == std::string::npos) continue;
    if (*line == "/reset") {
      chat.reset();
      std::fputs("(conversation forgotten)\n", stdout);
      continue;
    }
    try {
      const models::Generation gen = chat.reply(*line, options, [](std::string_view piece) {
        std::fwrite(piece.data(), 1, piece.size(), stdout);
        std::fflush(stdout);
      });
      std::fputs(gen.finish == models::FinishReason::kCancelled ? " (stopped)\n" : "\n", stdout);
      std::fprintf(stderr, "(%s)\n", timings_line(gen).c_str());
      if (gen.finish == models::FinishReason::kContext) {
        std::fputs("(the context is full: /reset to start again)\n", stdout);
      }
    } catch (const Error& e) {
      if (e.code() != ErrorCode::kCancelled && e.code() != ErrorCode::kInvalidArgument) throw;
      std::fprintf(stderr, "rag-cli: %s\n", e.what());
    }
    reset_cancel();
  }
}

}  // namespace

void add_llm_commands(CLI::App& app, LlmCommands& c) {
  LlmFlags& f = c.flags;
  c.generate = app.add_subcommand(
      "generate",
      "One completion from a local LLM (--model-id), streamed: PROMPT is the user message of "
      "the model's chat template, or plain text with --raw");
  c.generate->add_option("prompt", f.prompt, "The prompt")->required();
  c.generate->add_flag("--raw", f.raw,
                       "Send PROMPT as plain text (BOS as the tokenizer says, no template)");
  add_sampling_options(c.generate, f);
  c.generate->add_option("--dump-logits", f.dump_logits,
                         "Write the logits of every prompt position and generated token to "
                         "FILE.npy (float32 [prompt + generated, vocab])");
  c.generate->add_flag("--show-prompt", f.show_prompt,
                       "Print the rendered prompt on stderr before the answer");
  c.generate->footer(
      "Also: --model-id PATH|ORG/NAME (a folder, a .gguf file, or a repo id in the local "
      "Hugging Face cache), --max-tokens N (default 512), --json (one object with the ids, "
      "text, finish_reason and timings), --threads N.");

  c.chat = app.add_subcommand(
      "chat", "Talk with a local LLM (--model-id): history kept, each turn reuses the cache");
  add_sampling_options(c.chat, f);
  c.chat->footer(
      "Also: --model-id PATH|ORG/NAME, --max-tokens N per answer (default 512), --threads N. "
      "In the conversation: /reset forgets it, Ctrl+C stops the current answer, Ctrl+D "
      "leaves.");
}

int run_llm_command(const LlmCommands& c, const LlmGlobals& g) {
  CLI::App* sub = c.generate->parsed() ? c.generate : c.chat->parsed() ? c.chat : nullptr;
  if (sub == nullptr) return -1;
  LlmFlags f = c.flags;
  if (sub->count("--temp") == 0 && g.temperature) f.temperature = *g.temperature;
  if (sub->count("--seed") == 0 && g.seed) f.seed = *g.seed;
  if (sub->count("--ctx") == 0 && g.context) f.context = *g.context;
  return sub == c.generate ? run_generate(f, g) : run_chat(f, g);
}

}  // namespace hearth::apps
