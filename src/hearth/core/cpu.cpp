#include "hearth/core/cpu.hpp"

#include <cpuid.h>

#include <cstdio>
#include <cstdlib>
#include <string_view>

namespace hearth {

namespace {

// F16C is CPUID leaf 1, ECX bit 29 (asked directly: clang's __builtin_cpu_supports has no name
// for it). The OS's YMM state support is covered by the avx2 check it is combined with.
bool has_f16c() {
  unsigned eax = 0;
  unsigned ebx = 0;
  unsigned ecx = 0;
  unsigned edx = 0;
  return __get_cpuid(1, &eax, &ebx, &ecx, &edx) != 0 && (ecx & (1u << 29)) != 0;
}

}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures features = [] {
    __builtin_cpu_init();
    CpuFeatures f;
    f.avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && has_f16c();
    f.avx512 = f.avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
    f.avx512_bf16 = f.avx512 && __builtin_cpu_supports("avx512bf16");
    f.avx512_vnni = f.avx512 && __builtin_cpu_supports("avx512vnni");
    return f;
  }();
  return features;
}

SimdLevel simd_level() {
  static const SimdLevel level = [] {
    const CpuFeatures& f = cpu_features();
    SimdLevel best = f.avx512 ? SimdLevel::kAvx512 : f.avx2 ? SimdLevel::kAvx2 : SimdLevel::kScalar;
    if (const char* env = std::getenv("HEARTH_SIMD")) {
      const std::string_view want(env);
      SimdLevel cap = best;
      if (want == "scalar") cap = SimdLevel::kScalar;
      if (want == "avx2") cap = SimdLevel::kAvx2;
      if (static_cast<int>(cap) < static_cast<int>(best)) best = cap;
    }
    return best;
  }();
  return level;
}

const char* to_string(SimdLevel level) {
  switch (level) {
    case SimdLevel::kScalar:
      return "scalar";
    case SimdLevel::kAvx2:
      return "avx2";
    case SimdLevel::kAvx512:
      return "avx512";
  }
  return "?";
}

std::string describe_cpu() {
  const CpuFeatures& f = cpu_features();
  std::string s = std::string("simd=") + to_string(simd_level());
  if (f.avx512_bf16) s += " +avx512bf16";
  if (f.avx512_vnni) s += " +avx512vnni";
  return s;
}

std::string cpu_model_name() {
  std::FILE* f = std::fopen("/proc/cpuinfo", "r");
  std::string name;
  if (f != nullptr) {
    char line[512];
    while (std::fgets(line, sizeof line, f) != nullptr) {
      const std::string s(line);
      const auto colon = s.find(':');
      if (s.rfind("model name", 0) == 0 && colon != std::string::npos) {
        name = s.substr(s.find_first_not_of(" \t", colon + 1));
        while (!name.empty() && (name.back() == '\n' || name.back() == ' ')) name.pop_back();
        break;
      }
    }
    std::fclose(f);
  }
  return name.empty() ? std::string("unknown cpu") : name;
}

}  // namespace hearth
