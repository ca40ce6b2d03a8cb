// Fuzz target: the GGUF reader on arbitrary bytes. Any hearth::Error is a correct answer; a crash,
// sanitizer report, hang or other exception is a bug.
#include <cstddef>
#include <cstdint>
#include <span>

#include "fuzz/touch.hpp"
#include "hearth/core/error.hpp"
#include "hearth/formats/gguf.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
  try {
    const auto f = hearth::formats::GGUFFile::parse(bytes, "fuzz.gguf");
    for (const auto& [key, value] : f.metadata()) {
      hearth::fuzz::consume(key.size() + value.to_display(4).size());
      (void)value.as_number();
    }
    (void)f.architecture();
    for (const auto& t : f.tensors()) hearth::fuzz::touch(f.view(t));
  } catch (const hearth::Error&) {
  }
  return 0;
}
