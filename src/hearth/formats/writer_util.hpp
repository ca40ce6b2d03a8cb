// Pieces the format writers share: the tensors they are given, checked once, and ordered
// key/value lists where setting a key again replaces it in place.
#pragma once

#include <span>
#include <string>
#include <utility>
#include <vector>

#include "hearth/tensor/tensor.hpp"

namespace hearth::formats::detail {

struct PendingTensor {
  std::string name;
  DType dtype;
  Shape shape;
  std::span<const std::byte> data;  // referenced, not copied
};

// Appends a tensor after checking that data holds exactly dtype x shape and that the name is new;
// throws Error(kInvalidArgument) naming the tensor otherwise.
void add_pending_tensor(std::vector<PendingTensor>& tensors, std::string name, DType dtype,
                        Shape shape, std::span<const std::byte> data);

template <class V>
void upsert(std::vector<std::pair<std::string, V>>& kv, std::string key, V value) {
  for (auto& [k, v] : kv) {
    if (k == key) {
      v = std::move(value);
      return;
    }
  }
  kv.emplace_back(std::move(key), std::move(value));
}

}  // namespace hearth::formats::detail
