#include "hearth/cli/app.hpp"

#include <cstdio>
#include <exception>

#include "hearth/core/cancel.hpp"
#include "hearth/core/error.hpp"
#include "hearth/core/version.hpp"

namespace hearth::cli {
void add_common_options(CLI::App& app, CommonOptions& options) {
  app.set_version_flag("--version", std::string(app.get_name()) + " (hearth) " + kVersion +
                                        " (commit " + build_commit() + ")");
  app.add_option("--threads", options.threads, "Worker threads (default: every core)")
      ->check(CLI::Range(0, 4096));
}

int run(CLI::App& app, int argc, char** argv, const std::function<int()>& body) {
  return run(app, argc, argv, "", body);
}

int run(CLI::App& app, int argc, char** argv, const std::string& hint,
        const std::function<int()>& body) {
  const std::string program = app.get_name();
  install_cancel_handler();
  try {
    try {
      app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
      return app.exit(e);
    } catch (const CLI::CallForAllHelp& e) {
      return app.exit(e);
    } catch (const CLI::CallForVersion& e) {
      return app.exit(e);
    } catch (const CLI::ParseError& e) {
      std::fprintf(stderr, "%s: error: %s\n", program.c_str(), e.what());
      // The hint is about arguments: missing ones and ones that were not expected.
      const bool arguments = dynamic_cast<const CLI::RequiredError*>(&e) != nullptr ||
                             dynamic_cast<const CLI::ExtrasError*>(&e) != nullptr;
      if (!hint.empty() && arguments) std::fprintf(stderr, "%s\n", hint.c_str());
      std::fprintf(stderr, "Run '%s --help' for usage.\n", program.c_str());
      return 2;
    }
    return body();
  } catch (const Error& e) {
    std::fprintf(stderr, "%s: error: %s\n", program.c_str(), e.what());
    return exit_code_for(e.code());
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "%s: error: out of memory\n", program.c_str());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: error: %s\n", program.c_str(), e.what());
    return 1;
  }
}

}  // namespace hearth::cli
