// Cited answers from a language model over retrieved passages: the prompt (a system message that
// restricts the model to numbered sources, the sources delimited as material, not instructions),
// packing of the sources into the context left after the conversation and the answer's token
// budget, the check of the citations the model wrote, and follow-up questions that keep the
// conversation (and so the model's cached prefix).
//
// The model sits behind ChatModel, so tests can drive the whole flow with a scripted model; the
// real one is LanguageChatModel (a decoder, its chat template and one Session).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "hearth/models/chat.hpp"
#include "hearth/models/decoder.hpp"
#include "hearth/models/generate.hpp"
#include "hearth/rag/search.hpp"
#include "hearth/tokenize/chat_template.hpp"

namespace hearth::rag {

// The seam between answers and a language model.
class ChatModel {
 public:
  virtual ~ChatModel() = default;
  virtual std::string name() const = 0;
  // Tokens the model's session holds.
  virtual std::int64_t context() const = 0;
  // The token ids of messages rendered by the model's chat template with the generation prompt:
  // what generate() would run.
  virtual std::vector<std::int32_t> render(
      std::span<const tokenize::ChatMessage> messages) const = 0;
  // Tokens of text inside a message (no special tokens).
  virtual std::size_t count_tokens(std::string_view text) const = 0;
  // Generates the assistant's next message after messages, streaming its text; the cached
  // prefix of the previous call is reused.
  virtual models::Generation generate(std::span<const tokenize::ChatMessage> messages,
                                      const models::GenerateOptions& options,
                                      const std::function<void(std::string_view)>& on_text) = 0;
};

// A decoder with its chat template and one session. A template that leaves system messages out
// (the first Phi-3 templates do) gets the system text at the start of the first user message.
class LanguageChatModel final : public ChatModel {
 public:
  // context: the session's tokens (0: the model's default). Throws when the model has no chat
  // template.
  explicit LanguageChatModel(const models::LanguageModel& model, std::int64_t context = 0);
  std::string name() const override { return model_.name(); }
  std::int64_t context() const override { return session_.context(); }
  std::vector<std::int32_t> render(std::span<const tokenize::ChatMessage> messages) const override;
  std::size_t count_tokens(std::string_view text) const override;
  models::Generation generate(std::span<const tokenize::ChatMessage> messages,
                              const models::GenerateOptions& options,
                              const std::function<void(std::string_view)>& on_text) override;
  // Whether the template writes system messages (else they are merged into the first user turn).
  bool renders_system() const { return renders_system_; }
  // The rendered text of messages (for --show-prompt style inspection and tests).
  std::string render_text(std::span<const tokenize::ChatMessage> messages) const;

 private:
  std::vector<tokenize::ChatMessage> adapt(std::span<const tokenize::ChatMessage> messages) const;
  const models::LanguageModel& model_;
  models::ChatFormat format_;
  models::Session session_;
  bool renders_system_ = true;
};

// The system message of every answer conversation.
extern const char* const kAnswerSystemPrompt;

// The block a source is given to the model as: its number, file name, pages and heading path,
// then its text between <source ...> and </source> (document text cannot close the block: a
// "<source" or "</source" inside it is defused).
std::string source_block(int number, const ChunkInfo& chunk);

// Every citation number in text: [1], [2, 3], [1][4], [2-4], [1; 3] (a range adds at most 32).
std::vector<int> parse_citations(std::string_view text);

// Streams answer text and marks citations of numbers outside `valid`: "[7]" becomes
// "[7 (no such source)]", "[1, 9]" becomes "[1, 9 (no such source)]". Holds back text from a "["
// until the bracket closes (or turns out not to be a citation).
class CitationMarker {
 public:
  explicit CitationMarker(std::set<int> valid) : valid_(std::move(valid)) {}
  std::string push(std::string_view text);
  std::string finish();
  const std::set<int>& cited() const { return cited_; }      // valid numbers cited
  const std::set<int>& invalid() const { return invalid_; }  // numbers that name no source

 private:
  std::string close(const std::string& bracket);
  std::set<int> valid_;
  std::set<int> cited_;
  std::set<int> invalid_;
  std::string pending_;
};

struct AnswerOptions {
  models::SamplingParams sampling;
  std::int64_t max_tokens = 512;  // reserved in the context for the answer (must be > 0)
  std::vector<std::string> stop;
  std::string system = kAnswerSystemPrompt;
};

// A source in the conversation, by its number.
struct AnswerSource {
  int number = 0;
  Hit hit;
  std::size_t tokens = 0;  // its block's tokens
  bool cited = false;      // the answer cited it
  bool this_turn = false;  // retrieved for this question (else from an earlier turn)
};

// A retrieved chunk that did not go into the prompt.
struct LeftOut {
  Hit hit;
  std::size_t tokens = 0;
};

struct AnswerTimings {
  double retrieval_seconds = 0;
  double prompt_seconds = 0;  // packing and rendering
  double prefill_seconds = 0;
  double decode_seconds = 0;
  double first_token_seconds = 0;  // from the question to the first token (after prefill)
  double total_seconds = 0;
  std::int64_t prefill_tokens = 0;
  std::int64_t decode_tokens = 0;
  double decode_tokens_per_second() const {
    return decode_seconds > 0 ? static_cast<double>(decode_tokens) / decode_seconds : 0.0;
  }
};

struct Answer {
  std::string question;
  std::string query;           // what was retrieved with (standalone for a follow-up)
  bool nothing_found = false;  // retrieval found nothing; the model was not called
  std::string text;            // the answer, invalid citations marked
  std::string raw_text;        // as the model wrote it
  models::FinishReason finish = models::FinishReason::kStop;
  // The sources in the prompt that this answer may cite: cited ones first (by number), then the
  // rest of this turn's sources.
  std::vector<AnswerSource> sources;
  std::vector<int> invalid_citations;
  std::vector<LeftOut> left_out;  // retrieved but not in the prompt (did not fit)
  std::size_t dropped_turns = 0;  // earlier turns forgotten to make room
  std::size_t prompt_tokens = 0;
  std::size_t reused_tokens = 0;  // of the prompt, already in the model's cache
  std::size_t generated_tokens = 0;
  std::int64_t context = 0;
  AnswerTimings timings;
};

// Retrieval for a query: the hits, best first.
using Retriever = std::function<std::vector<Hit>(const std::string& query)>;

// A conversation of cited answers. Not thread-safe.
class Answerer {
 public:
  Answerer(ChatModel& model, AnswerOptions options);

  // Retrieves for the question (made standalone when there are earlier turns: the previous
  // question joined with it), packs the sources, generates and checks the citations. When
  // nothing is retrieved the answer says so and the model is not called. Throws
  // Error(kInvalidArgument) naming the limit to raise when not even one source fits, and
  // Error(kCancelled) when Ctrl+C came before the first token (the conversation is unchanged,
  // and so is the conversation after any error); an answer cut short by Ctrl+C later is kept
  // (finish kCancelled). Earlier turns are dropped, oldest first, when this question's sources
  // would not fit beside them (Answer::dropped_turns).
  Answer ask(const std::string& question, const Retriever& retrieve,
             const std::function<void(std::string_view)>& on_text = {});

  // The retrieval query for a question given the conversation so far.
  std::string standalone_query(const std::string& question) const;

  // Forgets the conversation.
  void reset();
  // The conversation as the model sees it (system message first).
  std::vector<tokenize::ChatMessage> messages() const;

 private:
  struct Turn {
    std::string question;
    std::string user;  // the user message as sent (sources and question)
    std::string answer;
    std::vector<int> new_sources;  // numbers introduced in this turn
  };
  static std::string key(const Hit& h);
  // The system message, turns, and user (when not null) as the next user message.
  std::vector<tokenize::ChatMessage> conversation(const std::vector<Turn>& turns,
                                                  const std::string* user) const;

  ChatModel& model_;
  AnswerOptions options_;
  std::vector<Turn> turns_;
  std::map<std::string, int> numbers_;   // chunk key -> its number in this conversation
  std::map<int, AnswerSource> present_;  // sources in the kept turns, by number
  int next_number_ = 1;
};

}  // namespace hearth::rag
