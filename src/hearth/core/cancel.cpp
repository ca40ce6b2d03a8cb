#include "hearth/core/cancel.hpp"

#include <unistd.h>

#include <atomic>
#include <csignal>

#include "hearth/core/error.hpp"

namespace hearth {
namespace {

std::atomic<int> g_signals{0};

extern "C" void on_signal(int sig) {
  if (g_signals.fetch_add(1) >= 1) {
    // Second interrupt: the user means it. _exit is async-signal-safe.
    _exit(128 + sig);
  }
}

}  // namespace

void install_cancel_handler() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: a blocking read returns EINTR so loops can notice
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

bool cancel_requested() {
  return g_signals.load(std::memory_order_relaxed) > 0;
}

void reset_cancel() {
  g_signals.store(0);
}

void throw_if_cancelled() {
  if (cancel_requested()) throw Error(ErrorCode::kCancelled, "interrupted");
}

}  // namespace hearth
