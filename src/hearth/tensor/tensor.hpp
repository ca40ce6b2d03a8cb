// Tensor descriptors: dtype, shape and strides over bytes that someone else owns (usually a
// memory-mapped model file). Shapes are outermost-first, as in numpy and safetensors; GGUF's
// innermost-first dims are reversed by its reader.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>
#include <vector>

#include "hearth/tensor/dtype.hpp"

namespace hearth {

using Shape = std::vector<std::int64_t>;

std::int64_t numel(const Shape& shape);
std::string shape_string(const Shape& shape);  // "[32064, 3072]"

struct TensorView {
  DType dtype = DType::kF32;
  Shape shape;
  // Byte strides per dimension. For block-quantized types the innermost dimension is packed in
  // blocks and its stride is 0; outer strides count whole rows of blocks.
  std::vector<std::int64_t> strides;
  const std::byte* data = nullptr;
  std::uint64_t nbytes = 0;

  // A row-major view over nbytes of data. shape must agree with nbytes (checked by the readers).
  static TensorView contiguous(DType dtype, Shape shape, const std::byte* data,
                               std::uint64_t nbytes);

  std::int64_t numel() const { return hearth::numel(shape); }
  std::size_t rank() const { return shape.size(); }
  bool is_contiguous() const;
  std::span<const std::byte> bytes() const { return {data, static_cast<std::size_t>(nbytes)}; }

  // The bytes as a span of T. Throws Error(kUnsupported) when data is not aligned for T (a file
  // may place a tensor at any byte offset); kernels that accept unaligned data use bytes().
  template <class T>
  std::span<const T> as() const {
    if (reinterpret_cast<std::uintptr_t>(data) % alignof(T) != 0) throw_misaligned(alignof(T));
    return {reinterpret_cast<const T*>(data), static_cast<std::size_t>(nbytes / sizeof(T))};
  }

 private:
  [[noreturn]] static void throw_misaligned(std::size_t alignment);
};

}  // namespace hearth
