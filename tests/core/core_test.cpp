#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <stdexcept>
#include <thread>

#include "hearth/core/cancel.hpp"
#include "hearth/core/error.hpp"
#include "hearth/core/mapped_file.hpp"
#include "hearth/core/memory.hpp"
#include "hearth/core/thread_pool.hpp"
#include "hearth/core/utf8.hpp"
#include "support/fixtures.hpp"

namespace hearth {
namespace {

TEST(Error, RendersWhereAndWhat) {
  const Error e(ErrorCode::kFormat, "bad thing", {.file = "m.gguf", .offset = 42, .key = "k"});
  EXPECT_STREQ(e.what(), "m.gguf: at byte 42: 'k': bad thing");
  EXPECT_EQ(e.code(), ErrorCode::kFormat);
  EXPECT_EQ(e.with_file("x").where().file, "x");
  EXPECT_STREQ(Error(ErrorCode::kIo, "plain").what(), "plain");
  EXPECT_EQ(exit_code_for(ErrorCode::kCancelled), 130);
  EXPECT_EQ(exit_code_for(ErrorCode::kUnsupported), 2);
  EXPECT_EQ(exit_code_for(ErrorCode::kFormat), 1);
}

TEST(MappedFile, MapsContentsAndReportsMissingFiles) {
  testing::TempDir dir;
  std::ofstream(dir / "a.bin") << "hello";
  const MappedFile f = MappedFile::open(dir / "a.bin");
  ASSERT_EQ(f.size(), 5u);
  EXPECT_EQ(static_cast<char>(f.bytes()[4]), 'o');

  std::ofstream(dir / "empty.bin").close();
  EXPECT_EQ(MappedFile::open(dir / "empty.bin").size(), 0u);

  try {
    MappedFile::open(dir / "missing.bin");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kNotFound);
    EXPECT_NE(std::string(e.what()).find("missing.bin"), std::string::npos);
  }
  EXPECT_THROW(MappedFile::open(dir.path()), Error);
}

TEST(MappedFile, MoveKeepsMappingValid) {
  testing::TempDir dir;
  std::ofstream(dir / "a.bin") << "abc";
  MappedFile a = MappedFile::open(dir / "a.bin");
  MappedFile b = std::move(a);
  EXPECT_EQ(a.size(), 0u);  // NOLINT(bugprone-use-after-move): moved-from state is defined
  ASSERT_EQ(b.size(), 3u);
  MappedFile c = MappedFile::open(dir / "a.bin");
  c = std::move(b);
  EXPECT_EQ(static_cast<char>(c.bytes()[0]), 'a');
}

TEST(ThreadPool, CoversEveryIndexExactlyOnce) {
  ThreadPool pool(4);
  EXPECT_EQ(pool.size(), 4u);
  for (std::size_t n : {0u, 1u, 3u, 4u, 1000u}) {
    std::vector<std::atomic<int>> hits(n);
    pool.parallel_for(n, [&](std::size_t b, std::size_t e) {
      for (std::size_t i = b; i < e; ++i) hits[i]++;
    });
    for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << "n=" << n << " i=" << i;
  }
}

TEST(ThreadPool, RespectsMinChunkAndRethrows) {
  ThreadPool pool(4);
  std::atomic<int> chunks{0};
  pool.parallel_for(
      10, [&](std::size_t, std::size_t) { chunks++; }, 8);
  EXPECT_EQ(chunks.load(), 2);
  EXPECT_THROW(pool.parallel_for(100,
                                 [](std::size_t b, std::size_t) {
                                   if (b > 0) throw std::runtime_error("chunk failed");
                                 }),
               std::runtime_error);
  // The pool still works after a failure.
  std::atomic<std::size_t> sum{0};
  pool.parallel_for(100, [&](std::size_t b, std::size_t e) {
    for (std::size_t i = b; i < e; ++i) sum += i;
  });
  EXPECT_EQ(sum.load(), 4950u);
}

// Jobs back to back (the workers still polling), jobs after a pause longer than the polling
// (the workers asleep on the condition variable), and jobs of fewer chunks than threads (the
// idle workers must skip them and still see the next job), each chunk run exactly once.
TEST(ThreadPool, PollingAndSleepingWorkersRunEveryJobOnce) {
  ThreadPool pool(4);
  const auto pause = std::chrono::duration<double>(4 * ThreadPool::kSpinSeconds);
  std::vector<std::size_t> sizes = {4, 2, 4, 3, 1000, 2, 4};
  for (int round = 0; round < 3; ++round) {
    for (const std::size_t n : sizes) {
      std::vector<std::atomic<int>> hits(n);
      pool.parallel_for(n, [&](std::size_t b, std::size_t e) {
        for (std::size_t i = b; i < e; ++i) hits[i]++;
      });
      for (std::size_t i = 0; i < n; ++i) {
        ASSERT_EQ(hits[i].load(), 1) << "round " << round << " n=" << n << " i=" << i;
      }
      if (round == 1) std::this_thread::sleep_for(pause);
    }
  }
  std::atomic<int> total{0};
  for (int i = 0; i < 2000; ++i) {
    pool.parallel_for(4, [&](std::size_t b, std::size_t e) { total += static_cast<int>(e - b); });
  }
  EXPECT_EQ(total.load(), 8000);
}

TEST(Utf8, FindsInvalidSequences) {
  EXPECT_TRUE(is_valid_utf8("plain ascii"));
  EXPECT_TRUE(is_valid_utf8("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80"));
  EXPECT_EQ(find_invalid_utf8("ab\xFFz"), 2u);
  EXPECT_EQ(find_invalid_utf8("\xC0\x80"), 0u);          // overlong NUL
  EXPECT_EQ(find_invalid_utf8("x\xED\xA0\x80"), 1u);     // surrogate
  EXPECT_EQ(find_invalid_utf8("\xF4\x90\x80\x80"), 0u);  // past U+10FFFF
  EXPECT_EQ(find_invalid_utf8("\xE2\x82"), 0u);          // truncated
  EXPECT_EQ(printable("a\xFF\n"), "a\\xFF\\x0A");
  EXPECT_EQ(printable(std::string(100, 'x'), 10), std::string(10, 'x') + "...");
}

TEST(Cancel, FirstInterruptSetsTheFlagThatWorkPolls) {
  install_cancel_handler();
  reset_cancel();
  EXPECT_FALSE(cancel_requested());
  EXPECT_NO_THROW(throw_if_cancelled());
  std::raise(SIGINT);  // the process survives the first one
  EXPECT_TRUE(cancel_requested());
  try {
    throw_if_cancelled();
    FAIL() << "expected a cancel";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kCancelled);
    EXPECT_EQ(exit_code_for(e.code()), 130);
  }
  reset_cancel();
  EXPECT_FALSE(cancel_requested());
}

TEST(Memory, FormatsBytesAndSeesPeakRss) {
  EXPECT_EQ(format_bytes(512), "512 B");
  EXPECT_EQ(format_bytes(1536), "1.50 KiB");
  EXPECT_EQ(format_bytes(3ull << 30), "3.00 GiB");
  EXPECT_GT(peak_rss_bytes(), 1u << 20);
}

}  // namespace
}  // namespace hearth
