// Run-time CPU feature detection: one portable binary picks its AVX2 or AVX-512 kernels here.
#pragma once

#include <string>

namespace hearth {

enum class SimdLevel { kScalar, kAvx2, kAvx512 };

struct CpuFeatures {
  bool avx2 = false;    // with FMA and F16C
  bool avx512 = false;  // F, BW, VL, DQ
  bool avx512_bf16 = false;
  bool avx512_vnni = false;
};

const CpuFeatures& cpu_features();

// The widest level this CPU supports, lowered by the environment variable HEARTH_SIMD
// (scalar|avx2|avx512) so tests and benchmarks can compare kernels on one machine.
SimdLevel simd_level();

const char* to_string(SimdLevel level);
std::string describe_cpu();
// The processor's name as /proc/cpuinfo gives it ("AMD EPYC 9454P 48-Core Processor"), or
// "unknown cpu".
std::string cpu_model_name();

}  // namespace hearth
