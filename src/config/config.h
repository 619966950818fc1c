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
//   (both also under sharing.mps.resources[], with the same meaning)
//
// sharing.mps has timeSlicing's shape. The two cannot be combined in one file (NVIDIA's plugin
// silently uses MPS then; here it is an error), MPS excludes MIG (migStrategy mixed, MIG names,
// MIG devices), and an MPS entry has at most kMaxMpsReplicas replicas (kMaxMpsReplicasPreVolta on a
// GPU older than compute capability 7.0, checked by ResolveResources).
//
// NVIDIA keys gpu-slicer does not act on (flags.gdrcopyEnabled, flags.plugin.kubeletSocket,
// flags.plugin.cdiFeatureFlags, imex, health) are parsed and type-checked so that NVIDIA's files
// load; docs/config.md lists where this parser is stricter than NVIDIA's and why.
//
// Thread-safety: plain values; parse functions are pure.
#ifndef SLICER_CONFIG_CONFIG_H_
#define SLICER_CONFIG_CONFIG_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
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
  // Parsed for NVIDIA compatibility; gpu-slicer takes the kubelet socket from its own flag.
  std::string kubelet_socket;
  std::string cdi_feature_flags;
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
  std::string nvidia_dev_root;  // empty: same as nvidia_driver_root
  bool gdrcopy_enabled = false;
  bool gds_enabled = false;
  bool mofed_enabled = false;
  bool use_node_feature_api = false;
  std::string device_discovery_strategy = "auto";  // auto | nvml | tegra
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

// Names are stored fully qualified: NVIDIA's parser prefixes a bare "gpu" with "nvidia.com/", and
// so does this one (NormalizeResourceName).
struct ReplicatedResource {
  std::string name;    // e.g. nvidia.com/gpu
  std::string rename;  // as written; empty: not renamed (or <name>.shared when renameByDefault
                       // and replicas > 1, applied by ResolveResources)
  DeviceSelector devices;
  int replicas = 1;
  // gpu-slicer extensions.
  std::optional<bool> enforce_memory;  // unset: true when replicas > 1
  bool allow_opt_out = false;
  int line = 0;  // where the entry starts in the file, for messages
};

// The largest accepted `replicas`. NVIDIA has no limit; a typo such as 10000 would make the plugin
// advertise that many devices per GPU and overflow the kubelet's ListAndWatch message.
inline constexpr int kMaxReplicas = 4096;

// An MPS server accepts at most 48 clients per GPU from compute capability 7.0 (Volta) on, 16
// before; each replica of an MPS resource is one client. NVIDIA's plugin checks 16 against 7.5.
inline constexpr int kMaxMpsReplicas = 48;
inline constexpr int kMaxMpsReplicasPreVolta = 16;
inline constexpr int kMpsVoltaComputeMajor = 7;

// The shape of both sharing.timeSlicing and sharing.mps (NVIDIA's ReplicatedResources).
struct TimeSlicing {
  bool rename_by_default = false;
  bool fail_requests_greater_than_one = false;
  bool fail_requests_set = false;  // failRequestsGreaterThanOne appeared in the file
  std::vector<ReplicatedResource> resources;
};

// How a node shares its GPUs: the value of the node label nvidia.com/gpu.sharing-strategy.
enum class SharingStrategy { kNone, kTimeSlicing, kMps };

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
  TimeSlicing time_slicing;        // empty when the file has no sharing.timeSlicing
  std::optional<TimeSlicing> mps;  // present when the file has sharing.mps
  // NVIDIA's `imex` and `health` sections, parsed so NVIDIA's files load. gpu-slicer's XID policy
  // comes from the device-plugin's environment knobs (docs/config.md).
  struct Imex {
    std::vector<int> channel_ids;
    bool required = false;
  } imex;
  struct Health {
    bool disabled = false;
    std::vector<std::string> event_types;
    std::vector<uint64_t> ignored_xids;
    bool critical_xids_all = true;
    std::vector<uint64_t> critical_xids;
  } health;

  // NVIDIA's rule: kMps when `mps` has an entry with replicas > 1, else kTimeSlicing when
  // `time_slicing` has one, else kNone.
  SharingStrategy Strategy() const;
  // failRequestsGreaterThanOne of the section Strategy() names: for MPS true unless the file sets
  // it (as NVIDIA's NewConfig does), for time-slicing false unless set. With kNone nothing is
  // shared and the value has no effect; it is that of `mps` when present, else of `time_slicing`.
  bool FailRequestsGreaterThanOne() const;
};

// Config files larger than this are rejected before YAML parsing: a ConfigMap holds at most
// 1 MiB, so anything bigger is not a config file, and yaml-cpp's memory use grows with the input.
inline constexpr size_t kMaxConfigBytes = 4 << 20;

struct ConfigError {
  std::string path;     // YAML path, e.g. "sharing.timeSlicing.resources[0].replicas"
  int line = 0;         // 1-based; 0 when unknown
  int column = 0;       // 1-based; 0 when unknown
  std::string message;  // what is wrong and what would be right
};

struct ParseResult {
  Config config;                    // meaningful only when errors is empty
  std::vector<ConfigError> errors;  // every problem found, in file order
  bool ok() const { return errors.empty(); }
};

// Parses and validates one config file's text. Never throws; malformed YAML is an error with the
// parser's line and column. Every problem is reported, not only the first.
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
  std::optional<std::string> mps_root;
};

// Applies `env` over `config`, then `flags` over that (flag > environment > file). Strategy
// strings are validated; an invalid one is an error naming the flag or variable. A resulting
// migStrategy mixed with sharing.mps is an error naming where "mixed" came from (MPS does not
// support MIG devices). On error `config` is unchanged.
absl::Status ApplyOverrides(const Overrides& env, const Overrides& flags, Config& config);

// Reads NVIDIA's environment variable names (MIG_STRATEGY, FAIL_ON_INIT_ERROR,
// NVIDIA_DRIVER_ROOT, PASS_DEVICE_SPECS, DEVICE_LIST_STRATEGY, DEVICE_ID_STRATEGY,
// CDI_ANNOTATION_PREFIX, MPS_ROOT) from `getenv`. Malformed booleans are errors naming the variable.
absl::StatusOr<Overrides> OverridesFromEnvironment(
    const std::map<std::string, std::string>& environment);

// The resources one node advertises, after resolving selectors against its GPUs.
struct GpuRef {
  std::string uuid;  // "GPU-..."; a MIG device (migStrategy single) passes its "MIG-..." UUID
  int index = 0;
  std::string product;  // name, for resources.gpus pattern matching
  int cc_major = 0;     // compute capability; 0: unknown
  int cc_minor = 0;
};
struct ResolvedResource {
  std::string name;                // final name after rename / renameByDefault
  int replicas = 1;                // 1: not shared
  std::vector<std::string> uuids;  // GPUs it covers, by index order
  bool enforce_memory = false;
  bool allow_opt_out = false;
  // kNone for replicas 1 (whole GPUs); else the section the entry came from.
  SharingStrategy sharing = SharingStrategy::kNone;
};

// Splits the node's GPUs between resources: each GPU's base name is the first resources.gpus
// pattern matching its product (no match: not advertised); each time-slicing or MPS entry takes
// the GPUs of its `name` that `devices` selects and advertises them as `rename` (or <name>.shared
// with renameByDefault and replicas > 1); GPUs taken by no entry are advertised whole (replicas 1)
// under their base name. Entries whose resource the node lacks (MIG, other products) are
// skipped. Results are ordered by their lowest GPU index; uuids by index.
// Errors (InvalidArgument, every problem joined by "; ", each naming the entry's YAML path): a
// selector naming an index or UUID the node does not have, a count larger than the node has, a
// MIG device, a GPU of another resource, a GPU claimed by two entries, two resources producing
// the same name with different replicas or memory settings. For MPS entries also: migStrategy
// mixed, a MIG resource name, a selected GPU whose UUID is a MIG UUID, replicas above
// kMaxMpsReplicas, and replicas above kMaxMpsReplicasPreVolta on a GPU whose known compute
// capability is below 7.0 (the message names the GPU's index, UUID, product and capability).
absl::StatusOr<std::vector<ResolvedResource>> ResolveResources(const Config& config,
                                                               const std::vector<GpuRef>& gpus);

// NVIDIA's resource-name rule: a name without the "nvidia.com/" prefix gets it; the part after the
// prefix must be a DNS-1123 subdomain and the whole at most 63 characters. InvalidArgument says
// what is wrong.
absl::StatusOr<std::string> NormalizeResourceName(std::string_view name);

// A MIG resource name: nvidia.com/mig-<profile> (migStrategy mixed).
bool IsMigResourceName(std::string_view name);
// A MIG device reference as `devices` lists it: a MIG index "0:1" or a MIG UUID "MIG-...".
bool IsMigDeviceRef(std::string_view id);

// NVIDIA's resources.gpus pattern match: '*' matches any run of characters, everything else is
// literal, and the pattern may match anywhere in the product name (NVIDIA's regexp is unanchored:
// "T4" matches "Tesla T4").
bool MatchesPattern(std::string_view pattern, std::string_view product);

std::string_view ToString(DeviceListStrategy s);
std::string_view ToString(DeviceIdStrategy s);
std::string_view ToString(SharingStrategy s);  // "none", "time-slicing", "mps"

}  // namespace slicer::config

#endif  // SLICER_CONFIG_CONFIG_H_
