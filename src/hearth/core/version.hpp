// The version of hearth and the commit it was built from, for --version and benchmark reports.
#pragma once

namespace hearth {

// The project version from CMakeLists.txt ("0.1.0").
inline constexpr const char* kVersion = HEARTH_VERSION;

// `git describe --always --dirty` of the checkout at build time ("63c7ba1f02ab-dirty"), or
// "unknown" outside a git checkout. Written by cmake/version.cmake at every build.
const char* build_commit();

}  // namespace hearth
