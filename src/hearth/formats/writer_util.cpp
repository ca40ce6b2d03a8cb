#include "hearth/formats/writer_util.hpp"

#include "hearth/core/error.hpp"

namespace hearth::formats::detail {

void add_pending_tensor(std::vector<PendingTensor>& tensors, std::string name, DType dtype,
                        Shape shape, std::span<const std::byte> data) {
  for (const std::int64_t d : shape) {
    if (d < 0) throw Error(ErrorCode::kInvalidArgument, "negative dimension", {.key = name});
  }
  const auto expect = dtype_bytes(dtype, static_cast<std::uint64_t>(numel(shape)));
  if (!expect || *expect != data.size()) {
    throw Error(ErrorCode::kInvalidArgument,
                "tensor data is " + std::to_string(data.size()) + " bytes, shape " +
                    shape_string(shape) + " of " + std::string(dtype_name(dtype)) + " needs " +
                    (expect ? std::to_string(*expect) : std::string("a whole number of blocks")),
                {.key = name});
  }
  for (const PendingTensor& t : tensors) {
    if (t.name == name) {
      throw Error(ErrorCode::kInvalidArgument, "duplicate tensor name", {.key = name});
    }
  }
  tensors.push_back({std::move(name), dtype, std::move(shape), data});
}

}  // namespace hearth::formats::detail
