// Fuzz target: the safetensors reader on arbitrary bytes. Any hearth::Error is a correct answer.
#include <cstddef>
#include <cstdint>
#include <span>

#include "fuzz/touch.hpp"
#include "hearth/core/error.hpp"
#include "hearth/formats/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
  try {
    const auto f = hearth::formats::SafetensorsFile::parse(bytes, "fuzz.safetensors");
    for (const auto& [k, v] : f.metadata()) hearth::fuzz::consume(k.size() + v.size());
    for (const auto& t : f.tensors()) hearth::fuzz::touch(f.view(t));
  } catch (const hearth::Error&) {
  }
  return 0;
}
