#include "hearth/tensor/tensor.hpp"

#include "hearth/core/error.hpp"

namespace hearth {

std::int64_t numel(const Shape& shape) {
  std::int64_t n = 1;
  for (const std::int64_t d : shape) n *= d;
  return n;
}

std::string shape_string(const Shape& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

TensorView TensorView::contiguous(DType dtype, Shape shape, const std::byte* data,
                                  std::uint64_t nbytes) {
  TensorView v;
  v.dtype = dtype;
  v.data = data;
  v.nbytes = nbytes;
  v.strides.assign(shape.size(), 0);
  const DTypeInfo& info = dtype_info(dtype);
  std::int64_t stride;
  std::size_t i = shape.size();
  if (info.block_size == 1) {
    stride = info.block_bytes;
  } else if (i > 0) {
    // innermost dimension is packed in blocks
    --i;
    v.strides[i] = 0;
    stride = shape[i] / info.block_size * info.block_bytes;
  } else {
    stride = 0;
  }
  while (i > 0) {
    --i;
    v.strides[i] = stride;
    stride *= shape[i];
  }
  v.shape = std::move(shape);
  return v;
}

void TensorView::throw_misaligned(std::size_t alignment) {
  throw Error(ErrorCode::kUnsupported,
              "tensor data is not aligned to " + std::to_string(alignment) + " bytes in its file");
}

bool TensorView::is_contiguous() const {
  const TensorView c = contiguous(dtype, shape, data, nbytes);
  return c.strides == strides;
}

}  // namespace hearth
