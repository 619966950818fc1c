// The device plugin's configuration: NVIDIA k8s-device-plugin's `version: v1` file format, read
// strictly, plus gpu-slicer's extensions, plus the flag > environment > file precedence.
//
// A file NVIDIA's plugin accepts means the same here. Where NVIDIA ignores mistakes, this parser
// reports them: an unknown or misplaced key, a wrong type, an out-of-range value, an unknown
// strategy. Each error names the YAML path, the line and column, and what would be right.
//
// Extensions (accepted here; NVIDIA's parser ignores unknown keys, so a file using them still
// loads there):
//   sharing.timeSlicing.resources[].enforceMemory  bool, default true when replicas > 1:
//                                                  cap each container's GPU memory at k/N.
//   sharing.timeSlicing.resources[].allowOptOut    bool, default false: containers may set
//                                                  SLICER_OPT_OUT=1 to run uncapped.
//
// Thread-safety: plain values; parse functions are pure.
#ifndef SLICER_CONFIG_CONFIG_H_
#define SLICER_CONFIG_CONFIG_H_

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"

namespace slicer::config {

enum class DeviceListStrategy { kEnvvar, kVolumeMounts, kCdiAnnotations, kCdiCri };
enum class DeviceIdStrategy { kUuid, kIndex };

struct PluginFlags {
  bool pass_device_specs = false;
  std::vector<DeviceListStrategy> device_list_strategy = {DeviceListStrategy::kEnvvar};
  DeviceIdStrategy device_id_strategy = DeviceIdStrategy::kUuid;
  std::string cdi_annotation_prefix = "cdi.k8s.io/";
  std::string nvidia_ctk_path = "/usr/bin/nvidia-ctk";
  std::string container_driver_root = "/driver-root";
};

struct GfdFlags {
  bool oneshot = false;
  bool no_timestamp = false;
  std::chrono::nanoseconds sleep_interval = std::chrono::seconds(60);
  std::string output_file = "/etc/kubernetes/node-feature-discovery/features.d/gfd";
  std::string machine_type_file = "/sys/class/dmi/id/product_name";
};

struct Flags {
  std::string mig_strategy = "none";  // none | single | mixed
  bool fail_on_init_error = true;
  std::string mps_root;
  std::string nvidia_driver_root = "/";
  std::string nvidia_dev_root;        // empty: same as nvidia_driver_root
  bool gds_enabled = false;
  bool mofed_enabled = false;
  bool use_node_feature_api = false;
  std::string device_discovery_strategy = "auto";
  PluginFlags plugin;
  GfdFlags gfd;
};

// Which GPUs a replicated resource covers: all of them, the first `count`, or a list of
// indices / UUIDs as written (resolved against the discovered GPUs by ResolveDevices()).
struct DeviceSelector {
  bool all = true;
  std::optional<int> count;
  std::vector<std::string> ids;  // "0", "3", "GPU-1111..."
};

struct ReplicatedResource {
  std::string name;     // e.g. nvidia.com/gpu
  std::string rename;   // empty: not renamed (or <name>.shared when renameByDefault)
  DeviceSelector devices;
  int replicas = 1;
  // gpu-slicer extensions.
  std::optional<bool> enforce_memory;  // unset: true when replicas > 1
  bool allow_opt_out = false;
  int line = 0;  // where the entry starts in the file, for messages
};

struct TimeSlicing {
  bool rename_by_default = false;
  bool fail_requests_greater_than_one = false;
  std::vector<ReplicatedResource> resources;
};

// `resources.gpus[]` / `resources.mig[]`: pattern → resource name (NVIDIA's format).
struct ResourcePattern {
  std::string pattern;  // glob on the product name, e.g. "*" or "Tesla T4"
  std::string name;     // e.g. nvidia.com/gpu
};

struct Config {
  std::string version = "v1";
  Flags flags;
  std::vector<ResourcePattern> gpu_resources = {{"*", "nvidia.com/gpu"}};
  std::vector<ResourcePattern> mig_resources;
  TimeSlicing time_slicing;
  bool has_mps = false;  // sharing.mps present (rejected by validation: not supported)
};

struct ConfigError {
  std::string path;     // YAML path, e.g. "sharing.timeSlicing.resources[0].replicas"
  int line = 0;         // 1-based; 0 when unknown
  int column = 0;       // 1-based; 0 when unknown
  std::string message;  // what is wrong and what would be right
};

struct ParseResult {
  Config config;                     // meaningful only when errors is empty
  std::vector<ConfigError> errors;   // every problem found, in file order
  bool ok() const { return errors.empty(); }
};

// Parses and validates one config file's text. Never throws; malformed YAML is an error with the
// parser's line and column. `source` names the file in messages.
ParseResult Parse(std::string_view yaml_text);

// Reads and parses a file. A missing or unreadable file is one error with path "" and line 0.
ParseResult ParseFile(const std::string& path);

// "file.yaml:12:5: sharing.timeSlicing.resources[0].replicas: must be >= 1, got 0"
std::string FormatError(const std::string& source, const ConfigError& error);

// Command-line flags and environment values that override the file. Unset means "not given".
struct Overrides {
  std::optional<std::string> mig_strategy;
  std::optional<bool> fail_on_init_error;
  std::optional<std::string> nvidia_driver_root;
  std::optional<bool> pass_device_specs;
  std::optional<std::string> device_list_strategy;  // comma list
  std::optional<std::string> device_id_strategy;
  std::optional<std::string> cdi_annotation_prefix;
};

// Applies `env` over `config`, then `flags` over that (flag > environment > file). Strategy
// strings are validated; an invalid one is an error naming the flag or variable.
absl::Status ApplyOverrides(const Overrides& env, const Overrides& flags, Config& config);

// Reads NVIDIA's environment variable names (MIG_STRATEGY, FAIL_ON_INIT_ERROR,
// NVIDIA_DRIVER_ROOT, PASS_DEVICE_SPECS, DEVICE_LIST_STRATEGY, DEVICE_ID_STRATEGY,
// CDI_ANNOTATION_PREFIX) from `getenv`. Malformed booleans are errors naming the variable.
absl::StatusOr<Overrides> OverridesFromEnvironment(
    const std::map<std::string, std::string>& environment);

// The resources one node advertises, after resolving selectors against its GPUs.
struct GpuRef {
  std::string uuid;
  int index = 0;
  std::string product;  // name, for resources.gpus pattern matching
};
struct ResolvedResource {
  std::string name;                 // final name after rename / renameByDefault
  int replicas = 1;                 // 1: not shared
  std::vector<std::string> uuids;   // GPUs it covers, by index order
  bool enforce_memory = false;
  bool allow_opt_out = false;
};

// Splits the node's GPUs between resources: each time-slicing entry takes the GPUs its
// `devices` selects (matching `name` against resources.gpus); GPUs taken by no entry are
// advertised whole under their base resource name. Errors: a selector naming an index or UUID
// the node does not have, a GPU claimed by two entries, two entries producing the same name
// with different replicas.
absl::StatusOr<std::vector<ResolvedResource>> ResolveResources(const Config& config,
                                                               const std::vector<GpuRef>& gpus);

std::string_view ToString(DeviceListStrategy s);
std::string_view ToString(DeviceIdStrategy s);

}  // namespace slicer::config

#endif  // SLICER_CONFIG_CONFIG_H_
