// Flag > environment > file, with NVIDIA's environment variable names.
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "src/common/units.h"
#include "src/config/config.h"

namespace slicer::config {
namespace {

// How one source names each option in messages.
struct Names {
  const char* mig_strategy;
  const char* fail_on_init_error;
  const char* nvidia_driver_root;
  const char* pass_device_specs;
  const char* device_list_strategy;
  const char* device_id_strategy;
  const char* cdi_annotation_prefix;
  const char* mps_root;
};

constexpr Names kEnvNames = {"MIG_STRATEGY",         "FAIL_ON_INIT_ERROR",   "NVIDIA_DRIVER_ROOT",
                             "PASS_DEVICE_SPECS",    "DEVICE_LIST_STRATEGY", "DEVICE_ID_STRATEGY",
                             "CDI_ANNOTATION_PREFIX", "MPS_ROOT"};
constexpr Names kFlagNames = {"--mig-strategy",         "--fail-on-init-error",
                              "--nvidia-driver-root",   "--pass-device-specs",
                              "--device-list-strategy", "--device-id-strategy",
                              "--cdi-annotation-prefix", "--mps-root"};

absl::Status Apply(const Overrides& o, const Names& names, Config& c) {
  if (o.mig_strategy) {
    const std::string& v = *o.mig_strategy;
    if (v != "none" && v != "single" && v != "mixed") {
      return absl::InvalidArgumentError(absl::StrCat(
          names.mig_strategy, ": unknown MIG strategy \"", v, "\"; use none, single or mixed"));
    }
    c.flags.mig_strategy = v;
  }
  if (o.fail_on_init_error) c.flags.fail_on_init_error = *o.fail_on_init_error;
  if (o.nvidia_driver_root) c.flags.nvidia_driver_root = *o.nvidia_driver_root;
  if (o.pass_device_specs) c.flags.plugin.pass_device_specs = *o.pass_device_specs;
  if (o.device_list_strategy) {
    std::vector<DeviceListStrategy> list;
    for (absl::string_view part : absl::StrSplit(*o.device_list_strategy, ',')) {
      std::string s(absl::StripAsciiWhitespace(part));
      DeviceListStrategy d;
      if (s == "envvar") {
        d = DeviceListStrategy::kEnvvar;
      } else if (s == "volume-mounts") {
        d = DeviceListStrategy::kVolumeMounts;
      } else if (s == "cdi-annotations") {
        d = DeviceListStrategy::kCdiAnnotations;
      } else if (s == "cdi-cri") {
        d = DeviceListStrategy::kCdiCri;
      } else {
        return absl::InvalidArgumentError(absl::StrCat(
            names.device_list_strategy, ": unknown device list strategy \"", s,
            "\"; use a comma list of envvar, volume-mounts, cdi-annotations, cdi-cri"));
      }
      bool seen = false;
      for (DeviceListStrategy e : list) seen |= e == d;
      if (!seen) list.push_back(d);
    }
    c.flags.plugin.device_list_strategy = list;
  }
  if (o.device_id_strategy) {
    const std::string& v = *o.device_id_strategy;
    if (v == "uuid") {
      c.flags.plugin.device_id_strategy = DeviceIdStrategy::kUuid;
    } else if (v == "index") {
      c.flags.plugin.device_id_strategy = DeviceIdStrategy::kIndex;
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          names.device_id_strategy, ": unknown device ID strategy \"", v, "\"; use uuid or index"));
    }
  }
  if (o.cdi_annotation_prefix) c.flags.plugin.cdi_annotation_prefix = *o.cdi_annotation_prefix;
  if (o.mps_root) c.flags.mps_root = *o.mps_root;
  return absl::OkStatus();
}

}  // namespace

absl::Status ApplyOverrides(const Overrides& env, const Overrides& flags, Config& config) {
  // Work on a copy so that a bad value leaves `config` untouched.
  Config next = config;
  if (absl::Status s = Apply(env, kEnvNames, next); !s.ok()) return s;
  if (absl::Status s = Apply(flags, kFlagNames, next); !s.ok()) return s;
  if (next.mps && next.flags.mig_strategy == "mixed") {
    // Parse rejects mixed + MPS within a file; an override can bring the two together.
    const std::string from = flags.mig_strategy ? absl::StrCat(kFlagNames.mig_strategy, "=mixed")
                             : env.mig_strategy
                                 ? absl::StrCat(kEnvNames.mig_strategy, "=mixed")
                                 : std::string("flags.migStrategy: mixed in the file");
    return absl::InvalidArgumentError(
        absl::StrCat(from,
                     ": MPS is not supported for MIG devices, and the config has sharing.mps; "
                     "use migStrategy none (or single) with MPS, or share MIG devices with "
                     "sharing.timeSlicing"));
  }
  config = std::move(next);
  return absl::OkStatus();
}

absl::StatusOr<Overrides> OverridesFromEnvironment(
    const std::map<std::string, std::string>& environment) {
  Overrides o;
  // An empty variable counts as unset, as with the urfave/cli flags NVIDIA's plugin uses.
  auto get = [&](const char* name) -> std::optional<std::string> {
    auto it = environment.find(name);
    if (it == environment.end() || it->second.empty()) return std::nullopt;
    return it->second;
  };
  auto boolean = [&](const char* name, std::optional<bool>& out) -> absl::Status {
    if (auto v = get(name)) {
      auto b = ParseBool(*v);
      if (!b.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(name, ": ", b.status().message()));
      }
      out = *b;
    }
    return absl::OkStatus();
  };
  o.mig_strategy = get(kEnvNames.mig_strategy);
  o.nvidia_driver_root = get(kEnvNames.nvidia_driver_root);
  o.device_list_strategy = get(kEnvNames.device_list_strategy);
  o.device_id_strategy = get(kEnvNames.device_id_strategy);
  o.cdi_annotation_prefix = get(kEnvNames.cdi_annotation_prefix);
  o.mps_root = get(kEnvNames.mps_root);
  if (absl::Status s = boolean(kEnvNames.fail_on_init_error, o.fail_on_init_error); !s.ok()) {
    return s;
  }
  if (absl::Status s = boolean(kEnvNames.pass_device_specs, o.pass_device_specs); !s.ok()) {
    return s;
  }
  return o;
}

}  // namespace slicer::config
