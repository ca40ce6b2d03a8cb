// Cooperative cancellation: Ctrl+C sets a flag that long work polls, so it stops cleanly (files
// closed, transactions rolled back) instead of dying mid-write. A second Ctrl+C exits at once.
#pragma once

namespace hearth {

// Installs the SIGINT/SIGTERM handler. Idempotent.
void install_cancel_handler();

bool cancel_requested();
void reset_cancel();

// Throws Error(kCancelled) when a cancel is pending.
void throw_if_cancelled();

}  // namespace hearth
