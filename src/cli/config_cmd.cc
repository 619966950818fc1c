// `slicer config validate FILE...`: checks config files without a GPU or a cluster.
//
// Exit status: 0 when every file is valid, 1 when any has errors (each printed as
// FILE:LINE:COL: PATH: message on stderr, the format compilers use so editors can jump to it), 2
// on a usage error.
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "src/cli/commands.h"
#include "src/config/config.h"

namespace slicer::cli {
namespace {

constexpr char kUsage[] =
    "usage: slicer config validate FILE...\n"
    "\n"
    "Checks NVIDIA k8s-device-plugin config files (version: v1) as `slicer device-plugin` reads\n"
    "them: unknown or misplaced keys, wrong types, bad values. Prints every error as\n"
    "FILE:LINE:COL: PATH: message and exits 1, or one 'FILE: ok (...)' line per file and exits 0.\n"
    "Use - to read standard input. Exit 2 on a usage error.\n";

// "2 resources: nvidia.com/gpu.shared (from nvidia.com/gpu, 4 replicas, devices 0),
// nvidia.com/t4 (unshared)". Without a node the GPUs are unknown, so this lists what the file
// declares; GPUs no entry selects are advertised whole under their resources.gpus name. MPS
// entries say so, and a shared config says when requests for more than one replica fail.
std::string Summary(const config::Config& c) {
  std::vector<std::string> parts;
  const bool mps = c.mps.has_value();
  const config::TimeSlicing& ts = mps ? *c.mps : c.time_slicing;
  for (const config::ReplicatedResource& r : ts.resources) {
    std::string name = r.name;
    if (!r.rename.empty()) {
      name = r.rename;
    } else if (ts.rename_by_default && r.replicas > 1) {
      name = r.name + ".shared";
    }
    std::string devices;
    if (r.devices.count) {
      devices = absl::StrCat(", first ", *r.devices.count, " GPUs");
    } else if (!r.devices.ids.empty()) {
      devices = absl::StrCat(", devices ", absl::StrJoin(r.devices.ids, ","));
    }
    std::string from = name == r.name ? "" : absl::StrCat("from ", r.name, ", ");
    std::string share = r.replicas > 1
                            ? absl::StrCat(r.replicas, mps ? " MPS replicas" : " replicas")
                            : std::string("unshared");
    bool caps = r.enforce_memory.value_or(r.replicas > 1);
    parts.push_back(absl::StrCat(name, " (", from, share, devices,
                                 r.replicas > 1 && !caps ? ", no memory caps" : "", ")"));
  }
  if (ts.resources.empty()) {
    for (const config::ResourcePattern& p : c.gpu_resources) {
      parts.push_back(absl::StrCat(p.name, " (GPUs matching \"", p.pattern, "\", unshared)"));
    }
  }
  // A shared entry that keeps its GPUs' own name but selects some of them: the GPUs it does not
  // select are advertised whole under that name, which the plugin refuses (one name, one replica
  // count). Only a node whose GPUs are all selected runs it; the file alone cannot tell.
  std::vector<std::string> hints;
  for (const config::ReplicatedResource& r : ts.resources) {
    const bool some = r.devices.count.has_value() || !r.devices.ids.empty();
    const bool renamed = !r.rename.empty() || (ts.rename_by_default && r.replicas > 1);
    if (r.replicas > 1 && some && !renamed) {
      hints.push_back(absl::StrCat(
          "; on a node with GPUs outside its devices, those would advertise ", r.name,
          " unshared beside its shares and the plugin refuses the config (rename: ", r.name,
          ".shared)"));
    }
  }
  std::string fail =
      c.Strategy() != config::SharingStrategy::kNone && c.FailRequestsGreaterThanOne()
          ? "; requests for more than 1 replica fail (failRequestsGreaterThanOne)"
          : "";
  return absl::StrCat(parts.size(), parts.size() == 1 ? " resource: " : " resources: ",
                      absl::StrJoin(parts, ", "), fail, absl::StrJoin(hints, ""));
}

std::string ReadStdin() {
  std::string text;
  char buf[65536];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, stdin)) > 0) {
    text.append(buf, n);
    if (text.size() > config::kMaxConfigBytes) break;
  }
  return text;
}

}  // namespace

int ConfigMain(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  for (const std::string& a : args) {
    if (a == "--help" || a == "-h" || a == "help") {
      std::fputs(kUsage, stdout);
      return 0;
    }
  }
  if (args.empty() || args[0] != "validate") {
    std::fprintf(stderr, "slicer config: %s\n\n%s",
                 args.empty() ? "missing subcommand"
                              : absl::StrCat("unknown subcommand \"", args[0], "\"").c_str(),
                 kUsage);
    return 2;
  }
  std::vector<std::string> files;
  bool only_files = false;
  for (size_t i = 1; i < args.size(); ++i) {
    if (!only_files && args[i] == "--") {
      only_files = true;
    } else if (!only_files && args[i].size() > 1 && args[i][0] == '-') {
      std::fprintf(stderr, "slicer config validate: unknown flag \"%s\"\n\n%s", args[i].c_str(),
                   kUsage);
      return 2;
    } else {
      files.push_back(args[i]);
    }
  }
  if (files.empty()) {
    std::fprintf(stderr, "slicer config validate: no FILE given\n\n%s", kUsage);
    return 2;
  }
  int status = 0;
  for (const std::string& file : files) {
    config::ParseResult r = file == "-" ? config::Parse(ReadStdin()) : config::ParseFile(file);
    const std::string shown = file == "-" ? "<stdin>" : file;
    if (!r.ok()) {
      for (const config::ConfigError& e : r.errors) {
        std::fprintf(stderr, "%s\n", config::FormatError(shown, e).c_str());
      }
      status = 1;
      continue;
    }
    std::fprintf(stdout, "%s: ok (%s)\n", shown.c_str(), Summary(r.config).c_str());
  }
  return status;
}

}  // namespace slicer::cli
