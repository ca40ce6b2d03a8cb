// hearth-make-vae: random-weight FLUX.1-style AutoencoderKL models for tests, the same weights in
// both layouts hearth reads:
//   OUT/vae/config.json + OUT/vae/diffusion_pytorch_model.safetensors   (diffusers)
//   OUT/ae.safetensors                                                  (Black Forest Labs)
//   or, with --layout mflux [--mlx-bits 4|8]: OUT/mflux/vae/ (mflux's saved layout) and OUT/vae/
//   (diffusers, exactly the weights the mflux folder holds)
// The weights are vae_weights.hpp's.
#include <CLI/CLI.hpp>
#include <filesystem>
#include <string>
#include <vector>

#include "hearth/cli/app.hpp"
#include "hearth/core/error.hpp"
#include "vae_weights.hpp"

namespace fs = std::filesystem;
using hearth::DType;
using i64 = std::int64_t;

int main(int argc, char** argv) {
  CLI::App app{
      "Write a random-weight FLUX.1-style AutoencoderKL (diffusers vae/ folder and BFL "
      "ae.safetensors, the same weights)",
      "hearth-make-vae"};
  hearth::cli::CommonOptions common;
  hearth::cli::add_common_options(app, common);
  std::string out;
  std::string layout = "both";
  std::string dtype_name = "f32";
  std::vector<i64> channels = {32, 64};
  i64 layers = 1;
  i64 latent = 16;
  i64 groups = 32;
  unsigned seed = 1;
  app.add_option("--out", out, "Output folder")->required();
  int mlx_bits = 0;
  app.add_option("--layout", layout,
                 "diffusers, bfl, both, or mflux (OUT/mflux/vae/ in mflux's saved layout, and "
                 "OUT/vae/ in diffusers' holding exactly its weights)")
      ->check(CLI::IsMember({"diffusers", "bfl", "both", "mflux"}));
  app.add_option("--mlx-bits", mlx_bits,
                 "mflux layout: 4 or 8 quantizes the attention's linears MLX-affine (group 64) "
                 "as mflux-save --quantize does; 0 (default): quantization_level None")
      ->check(CLI::IsMember({0, 4, 8}));
  app.add_option("--dtype", dtype_name, "f32, f16 or bf16")
      ->check(CLI::IsMember({"f32", "f16", "bf16"}));
  app.add_option("--channels", channels, "block_out_channels (FLUX.1: 128,256,512,512)")
      ->delimiter(',');
  app.add_option("--layers", layers, "layers_per_block (FLUX.1: 2)")->check(CLI::Range(1, 8));
  app.add_option("--latent", latent, "latent_channels (FLUX.1: 16)")->check(CLI::Range(1, 64));
  app.add_option("--groups", groups,
                 "norm_num_groups (FLUX.1 and every BFL file: 32); diffusers layout only when "
                 "not 32");
  app.add_option("--seed", seed, "Random seed");
  return hearth::cli::run(app, argc, argv, [&] {
    for (const i64 c : channels) {
      if (c <= 0 || c % groups != 0) {
        throw hearth::Error(hearth::ErrorCode::kInvalidArgument,
                            "--channels must be positive multiples of --groups");
      }
    }
    if (groups != 32 && layout != "diffusers") {
      throw hearth::Error(hearth::ErrorCode::kInvalidArgument,
                          "BFL's ae.safetensors and mflux's VAE imply 32 groups: use --layout "
                          "diffusers");
    }
    const DType dtype = *hearth::dtype_from_name(dtype_name);
    fs::create_directories(out);
    if (layout == "mflux") {
      write_random_vae_mflux(fs::path(out) / "mflux" / "vae", fs::path(out) / "vae", dtype,
                             {channels, layers, latent, groups}, seed, mlx_bits);
      return 0;
    }
    write_random_vae(layout != "bfl" ? fs::path(out) / "vae" : fs::path(),
                     layout != "diffusers" ? fs::path(out) / "ae.safetensors" : fs::path(), dtype,
                     {channels, layers, latent, groups}, seed);
    return 0;
  });
}
