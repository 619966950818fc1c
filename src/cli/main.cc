// `slicer`: one binary, subcommands dispatched here.
#include <cstdio>
#include <cstring>
#include <string_view>

#include "src/cli/commands.h"

namespace {

struct Command {
  const char* name;
  int (*main)(int, char**);
  const char* summary;
};

constexpr Command kCommands[] = {
    {"device-plugin", slicer::cli::DevicePluginMain, "run the kubelet device plugin"},
    {"config", slicer::cli::ConfigMain, "check config files: slicer config validate FILE..."},
    {"demo", slicer::cli::DemoMain, "the device plugin on a simulated node, narrated"},
    {"run", slicer::cli::RunMain,
     "run a command under the shim: slicer run [--memory SIZE] [--weight W] [--priority P] -- "
     "CMD..."},
    {"arbiter", slicer::cli::ArbiterMain, "the node daemon: time shares, priorities, /metrics"},
    {"status", slicer::cli::StatusMain, "live table of shares and memory from the arbiter"},
    {"mps-daemon", slicer::cli::MpsDaemonMain,
     "one NVIDIA MPS control daemon per GPU the plugin shares through MPS"},
};

void Usage(FILE* out) {
  std::fprintf(out, "usage: slicer COMMAND [ARGS...]\n\ncommands:\n");
  for (const Command& c : kCommands) std::fprintf(out, "  %-14s %s\n", c.name, c.summary);
  std::fprintf(out, "\n'slicer COMMAND --help' describes a command's flags.\n");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    Usage(stderr);
    return 2;
  }
  std::string_view name = argv[1];
  if (name == "--help" || name == "-h" || name == "help") {
    Usage(stdout);
    return 0;
  }
  for (const Command& c : kCommands) {
    if (name == c.name) return c.main(argc - 1, argv + 1);
  }
  std::fprintf(stderr, "slicer: unknown command \"%s\"\n\n", argv[1]);
  Usage(stderr);
  return 2;
}
