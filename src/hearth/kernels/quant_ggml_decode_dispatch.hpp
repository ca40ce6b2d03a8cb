// The type dispatch shared by the decode files of quant_ggml.hpp (quant_ggml_decode.avx2.cpp,
// quant_ggml_decode.avx512.cpp), written once and compiled with each: include it inside the
// file's unnamed namespace after its kernels gemv_q4_0<R>, gemv_q8_0<R>, gemv_q45_k<R, fifth>,
// gemv_q6_k<R> and act_row_bytes (the file includes row_tiles.hpp at its top). Gives handles()
// and gemv() for the file's DecodeKernels.
#pragma once

using Gemv = void (*)(const u8*, i64, i64, i64, const u8*, i64, const float*, float*, i64);

template <int R>
Gemv pick(DType t) {
  switch (t) {
    case DType::kQ4_0:
      return gemv_q4_0<R>;
    case DType::kQ8_0:
      return gemv_q8_0<R>;
    case DType::kQ4_K:
      return gemv_q45_k<R, false>;
    case DType::kQ5_K:
      return gemv_q45_k<R, true>;
    case DType::kQ6_K:
      return gemv_q6_k<R>;
    default:
      return nullptr;
  }
}

bool handles(DType t) {
  return pick<1>(t) != nullptr;
}

void gemv(DType t, const void* w, i64 k, i64 n0, i64 n1, const void* xp, i64 rows,
          const float* bias, float* y, i64 ldy) {
  const auto* wb = static_cast<const u8*>(w);
  const auto* xb = static_cast<const u8*>(xp);
  const i64 xrb = act_row_bytes(t, k);
  for_row_tiles(rows, [&](i64 r, auto tile) {
    pick<decltype(tile)::value>(t)(wb, k, n0, n1, xb + r * xrb, xrb, bias, y + r * ldy, ldy);
  });
}
