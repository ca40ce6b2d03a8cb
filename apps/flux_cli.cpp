// flux-cli: FLUX.1 text-to-image on this machine.
#include "hearth/cli/app.hpp"

int main(int argc, char** argv) {
  CLI::App app{"FLUX.1 schnell/dev text-to-image, PNG out (planned)", "flux-cli"};
  hearth::cli::CommonOptions common;
  hearth::cli::add_common_options(app, common);
  app.require_subcommand(0, 1);
  hearth::cli::add_planned(app, "generate",
                           "Render a prompt: --prompt, --steps, --size WxH, --seed, --guidance, "
                           "--n-images (grid), --quantize 4, --lora PATH, --output PNG",
                           "FLUX");
  return hearth::cli::run(app, argc, argv, [&] {
    std::fprintf(stderr,
                 "flux-cli: image generation is not implemented yet (planned: FLUX). "
                 "See 'flux-cli --help'.\n");
    return 2;
  });
}
