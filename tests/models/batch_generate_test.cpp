// BatchGenerator on a real trained model (stories260K): streams with their own sampling, stop
// strings, token limits, contexts and cached prefixes, joining and leaving the batch between
// steps, must each give what generate() gives alone on a fresh session (f32 weights: the batched
// step is exact, so the same ids and text).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <csignal>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "hearth/core/cancel.hpp"
#include "hearth/core/error.hpp"
#include "hearth/models/generate.hpp"
#include "support/fixtures.hpp"

namespace hearth::models {
namespace {

struct Job {
  std::string prompt;  // "" = BOS alone
  GenerateOptions options;
  std::int64_t context = 0;
  int join_at = 0;        // the step before which it is added
  bool history = false;   // its session first generates 12 tokens from BOS (a previous turn)
  int cancel_after = -1;  // steps after joining at which cancel() is called
};

std::vector<std::int32_t> ids_of(const LanguageModel& model, const std::string& prompt) {
  if (prompt.empty()) return {1};
  return model.tokenizer().encode(prompt).ids;
}

// A session as the job wants it: its context, and the previous turn when it has one.
std::unique_ptr<Session> session_for(const LanguageModel& model, const Job& job,
                                     std::vector<std::int32_t>& prompt) {
  auto s = std::make_unique<Session>(model, job.context);
  prompt = ids_of(model, job.prompt);
  if (job.history) {
    GenerateOptions o;
    o.max_tokens = 12;
    const std::int32_t bos[1] = {1};
    const Generation first = generate(*s, bos, o);
    std::vector<std::int32_t> turn{1};
    turn.insert(turn.end(), first.token_ids.begin(), first.token_ids.end());
    turn.insert(turn.end(), prompt.begin(), prompt.end());
    prompt = turn;
  }
  return s;
}

TEST(BatchGenerator, EveryStreamGivesWhatItGivesAlone) {
  HEARTH_REQUIRE_FIXTURE(dir, "models/stories260K");
  // An f32 KV cache, so that the logits compared at the end differ by f32 rounding alone: with
  // the default f16 cache, the GEMV's and the GEMM's different summation orders can put a K or V
  // value on the other side of an f16 rounding step (seen on AVX2: 2.5e-4 of the scale).
  LlmOptions options;
  options.kv_dtype = DType::kF32;
  const auto model = LanguageModel::load(dir / "stories260K-f32.gguf", options);
  std::vector<float> rows_batched, rows_alone;
  std::vector<Job> jobs(7);
  jobs[0].options.max_tokens = 30;      // greedy from BOS, to the limit
  jobs[1].prompt = "Once upon a time";  // seeded sampling
  jobs[1].options.max_tokens = 25;
  jobs[1].options.sampling.temperature = 0.9f;
  jobs[1].options.sampling.top_p = 0.9f;
  jobs[1].options.sampling.seed = 7;
  jobs[2].options.max_tokens = 100;  // a stop string, joining at step 2
  jobs[2].options.stop = {" girl"};
  jobs[2].join_at = 2;
  jobs[3].prompt = "The dog";  // the context fills up
  jobs[3].options.max_tokens = 0;
  jobs[3].context = 20;
  jobs[3].join_at = 5;
  jobs[4].options.max_tokens = 40;  // cancelled by its client
  jobs[4].options.sampling.temperature = 1.0f;
  jobs[4].options.sampling.seed = 3;
  jobs[4].join_at = 1;
  jobs[4].cancel_after = 6;
  jobs[5].prompt =  // a long prompt: several prefill chunks
      "Once upon a time, there was a little girl named Lily. She loved to play outside in the "
      "sun. One day, she saw a big tree";
  jobs[5].options.max_tokens = 12;
  jobs[5].options.logits = &rows_batched;
  jobs[5].join_at = 5;
  jobs[6].prompt = " Then they went home.";  // a continued conversation
  jobs[6].options.max_tokens = 15;
  jobs[6].options.sampling.repetition_penalty = 1.3f;
  jobs[6].history = true;
  jobs[6].join_at = 3;

  BatchGenerator batch(*model, 8);
  std::vector<std::unique_ptr<Session>> sessions(jobs.size());
  std::map<BatchGenerator::StreamId, std::size_t> job_of;
  std::vector<BatchGenerator::StreamId> ids(jobs.size(), 0);
  std::vector<std::string> streamed(jobs.size());
  std::vector<Generation> got(jobs.size());
  std::vector<bool> finished(jobs.size(), false);
  std::size_t most = 0;
  for (int step = 0; step < 200; ++step) {
    for (std::size_t j = 0; j < jobs.size(); ++j) {
      if (jobs[j].join_at == step) {
        std::vector<std::int32_t> prompt;
        sessions[j] = session_for(*model, jobs[j], prompt);
        ids[j] = batch.add(*sessions[j], prompt, jobs[j].options,
                           [&streamed, j](std::string_view p) { streamed[j] += p; });
        job_of[ids[j]] = j;
      }
      if (jobs[j].cancel_after >= 0 && step == jobs[j].join_at + jobs[j].cancel_after) {
        batch.cancel(ids[j]);
      }
    }
    most = std::max(most, batch.size());
    for (BatchGenerator::Finished& f : batch.step()) {
      ASSERT_FALSE(f.error) << "stream " << f.id;
      const std::size_t j = job_of.at(f.id);
      got[j] = std::move(f.generation);
      finished[j] = true;
    }
    if (step > 5 && batch.empty()) break;
  }
  EXPECT_TRUE(batch.empty());
  EXPECT_GE(most, 5u);  // most jobs ran together at some step

  jobs[5].options.logits = &rows_alone;
  for (std::size_t j = 0; j < jobs.size(); ++j) {
    SCOPED_TRACE("job " + std::to_string(j));
    ASSERT_TRUE(finished[j]);
    std::vector<std::int32_t> prompt;
    const auto alone = session_for(*model, jobs[j], prompt);
    GenerateOptions o = jobs[j].options;
    if (jobs[j].cancel_after >= 0)
      o.max_tokens = static_cast<std::int64_t>(got[j].token_ids.size());
    const Generation want = generate(*alone, prompt, o);
    EXPECT_EQ(got[j].token_ids, want.token_ids);
    EXPECT_EQ(got[j].text, want.text);
    EXPECT_EQ(streamed[j], got[j].text);
    EXPECT_EQ(got[j].prompt_tokens, want.prompt_tokens);
    EXPECT_EQ(got[j].reused_tokens, want.reused_tokens);
    EXPECT_EQ(got[j].timings.prefill_tokens + got[j].timings.decode_tokens,
              want.timings.prefill_tokens + want.timings.decode_tokens);
    EXPECT_EQ(sessions[j]->tokens(), alone->tokens());
    if (jobs[j].cancel_after < 0) {
      EXPECT_EQ(got[j].finish, want.finish);
    }
  }
  EXPECT_EQ(got[0].finish, FinishReason::kLength);
  EXPECT_EQ(got[2].finish, FinishReason::kStop);
  EXPECT_EQ(got[2].text, "Once upon a time, there was a little");
  EXPECT_EQ(got[3].finish, FinishReason::kContext);
  EXPECT_EQ(got[4].finish, FinishReason::kCancelled);
  EXPECT_GE(got[4].token_ids.size(), 4u);
  EXPECT_LT(got[4].token_ids.size(), 8u);
  EXPECT_GT(got[6].reused_tokens, 12u);
  EXPECT_GT(got[5].prompt_tokens, 24u);  // three or more chunks of 8
  // Its prompt ran in chunks of 8 rows (GEMV) here and at once (GEMM) alone: f32 rounding apart.
  ASSERT_EQ(rows_batched.size(), rows_alone.size());
  float worst = 0.0f, scale = 0.0f;
  for (std::size_t i = 0; i < rows_alone.size(); ++i) {
    worst = std::max(worst, std::abs(rows_batched[i] - rows_alone[i]));
    scale = std::max(scale, std::abs(rows_alone[i]));
  }
  EXPECT_GT(scale, 1.0f);
  EXPECT_LT(worst, 1e-4f * scale);
}

TEST(BatchGenerator, RefusesWhatGenerateRefusesAndSharedSessions) {
  HEARTH_REQUIRE_FIXTURE(dir, "models/stories260K");
  const auto model = LanguageModel::load(dir / "stories260K-f32.gguf");
  const auto other = LanguageModel::load(dir / "stories260K-f32.gguf");
  BatchGenerator batch(*model);
  Session a(*model, 16), b(*other);
  const std::int32_t bos[1] = {1};
  GenerateOptions o;
  batch.add(a, bos, o);
  const auto code = [&](Session& s, std::span<const std::int32_t> prompt,
                        const GenerateOptions& opts) {
    try {
      batch.add(s, prompt, opts);
    } catch (const Error& e) {
      return e.code();
    }
    return ErrorCode::kInternal;
  };
  EXPECT_EQ(code(a, bos, o), ErrorCode::kInvalidArgument);  // already generating
  EXPECT_EQ(code(b, bos, o), ErrorCode::kInvalidArgument);  // another model
  Session c(*model, 16);
  const std::vector<std::int32_t> long_prompt(17, 300);
  EXPECT_EQ(code(c, long_prompt, o), ErrorCode::kInvalidArgument);
  GenerateOptions bad = o;
  bad.max_tokens = -1;
  EXPECT_EQ(code(c, bos, bad), ErrorCode::kInvalidArgument);
  bad = o;
  bad.sampling.top_p = 2.0f;
  EXPECT_EQ(code(c, bos, bad), ErrorCode::kInvalidArgument);
  EXPECT_EQ(batch.size(), 1u);
  EXPECT_THROW(BatchGenerator(*model, -1), Error);
}

// cancel() from another thread (a server's connection thread) ends that stream at the next step.
TEST(BatchGenerator, CancelFromAnotherThread) {
  HEARTH_REQUIRE_FIXTURE(dir, "models/stories260K");
  const auto model = LanguageModel::load(dir / "stories260K-f32.gguf");
  BatchGenerator batch(*model);
  Session a(*model), b(*model);
  GenerateOptions o;
  o.max_tokens = 50;
  const std::int32_t bos[1] = {1};
  const auto a_id = batch.add(a, bos, o);
  batch.add(b, bos, o);
  std::atomic<int> stage{0};
  std::thread client([&] {
    while (stage.load() == 0) std::this_thread::yield();
    batch.cancel(a_id);
    stage.store(2);
  });
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(batch.step().empty());
  stage.store(1);
  while (stage.load() != 2) std::this_thread::yield();
  client.join();
  const auto done = batch.step();
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].id, a_id);
  EXPECT_EQ(done[0].generation.finish, FinishReason::kCancelled);
  EXPECT_EQ(done[0].generation.token_ids.size(), 3u);
  EXPECT_EQ(batch.size(), 1u);  // b goes on
  while (!batch.empty()) {
    for (const auto& f : batch.step()) EXPECT_EQ(f.generation.finish, FinishReason::kLength);
  }
}

// A callback that throws (a server's client gone mid-write) ends its own stream with that
// exception; the others go on.
TEST(BatchGenerator, AThrowingCallbackEndsOnlyItsStream) {
  HEARTH_REQUIRE_FIXTURE(dir, "models/stories260K");
  const auto model = LanguageModel::load(dir / "stories260K-f32.gguf");
  BatchGenerator batch(*model);
  Session a(*model), b(*model);
  GenerateOptions o;
  o.max_tokens = 20;
  const std::int32_t bos[1] = {1};
  int pieces = 0;
  const auto a_id = batch.add(a, bos, o, [&](std::string_view) {
    if (++pieces == 3) throw std::runtime_error("connection closed");
  });
  std::string b_text;
  batch.add(b, bos, o, [&](std::string_view p) { b_text += p; });
  std::vector<BatchGenerator::Finished> done;
  for (int i = 0; i < 100 && !batch.empty(); ++i) {
    for (auto& f : batch.step()) done.push_back(std::move(f));
  }
  ASSERT_EQ(done.size(), 2u);
  EXPECT_EQ(done[0].id, a_id);
  EXPECT_EQ(done[0].generation.finish, FinishReason::kCancelled);
  ASSERT_TRUE(done[0].error);
  EXPECT_THROW(std::rethrow_exception(done[0].error), std::runtime_error);
  EXPECT_EQ(pieces, 3);  // nothing more was sent to it
  EXPECT_LT(done[0].generation.token_ids.size(), 20u);
  EXPECT_EQ(done[1].generation.finish, FinishReason::kLength);
  EXPECT_EQ(done[1].generation.text, b_text);
  EXPECT_FALSE(done[1].error);
}

// Ctrl+C ends every stream with kCancelled at the next step, prompts included (whose sessions
// keep their reused prefix and report the Error).
TEST(BatchGenerator, CtrlCEndsEveryStream) {
  HEARTH_REQUIRE_FIXTURE(dir, "models/stories260K");
  const auto model = LanguageModel::load(dir / "stories260K-f32.gguf");
  install_cancel_handler();
  reset_cancel();
  BatchGenerator batch(*model, 4);
  Session a(*model), b(*model);
  GenerateOptions o;
  o.max_tokens = 100;
  const std::int32_t bos[1] = {1};
  batch.add(a, bos, o);
  batch.step();
  batch.step();
  const auto prompt = model->tokenizer().encode("Once upon a time, there was a dog").ids;
  const auto b_id = batch.add(b, prompt, o);
  std::raise(SIGINT);
  const auto done = batch.step();
  reset_cancel();
  ASSERT_EQ(done.size(), 2u);
  EXPECT_TRUE(batch.empty());
  for (const auto& f : done) EXPECT_EQ(f.generation.finish, FinishReason::kCancelled);
  // b's prompt was cut short: the Error, as generate() would throw it.
  EXPECT_EQ(done[0].id, b_id);
  ASSERT_TRUE(done[0].error);
  try {
    std::rethrow_exception(done[0].error);
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kCancelled);
  }
  EXPECT_FALSE(done[1].error);  // a was decoding: it ends with its text
  EXPECT_EQ(done[1].generation.token_ids.size(), 2u);
  EXPECT_EQ(b.tokens().size(), 0u);
  EXPECT_EQ(a.tokens().size(), 3u);  // BOS and the two tokens run
}

}  // namespace
}  // namespace hearth::models
