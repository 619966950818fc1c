// The strict reader of NVIDIA's `version: v1` config format.
//
// The parser walks the YAML tree against a fixed schema (the key lists below) and collects every
// problem instead of stopping at the first: a user fixing a ConfigMap wants the whole list at
// once. yaml-cpp throws; every call into it happens inside Parse's try blocks, so nothing escapes.
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "src/common/units.h"
#include "src/config/config.h"
#include "yaml-cpp/yaml.h"

namespace slicer::config {
namespace {

// ---- Schema: which keys each mapping may hold. ----

struct Section {
  const char* where;  // the path users see, "[]" for "each list entry"
  std::vector<std::string_view> keys;
};

const std::vector<Section>& Schema() {
  static const auto* schema = new std::vector<Section>{
      {"the top level", {"version", "flags", "resources", "sharing", "imex", "health"}},
      {"flags",
       {"migStrategy", "failOnInitError", "mpsRoot", "nvidiaDriverRoot", "nvidiaDevRoot",
        "gdrcopyEnabled", "gdsEnabled", "mofedEnabled", "useNodeFeatureAPI",
        "deviceDiscoveryStrategy", "plugin", "gfd"}},
      {"flags.plugin",
       {"passDeviceSpecs", "deviceListStrategy", "deviceIDStrategy", "cdiAnnotationPrefix",
        "nvidiaCTKPath", "containerDriverRoot", "kubeletSocket", "cdiFeatureFlags"}},
      {"flags.gfd", {"oneshot", "noTimestamp", "sleepInterval", "outputFile", "machineTypeFile"}},
      {"resources", {"gpus", "mig"}},
      {"resources.gpus[]", {"pattern", "name"}},
      {"sharing", {"timeSlicing", "mps"}},
      {"sharing.timeSlicing", {"renameByDefault", "failRequestsGreaterThanOne", "resources"}},
      {"sharing.timeSlicing.resources[]",
       {"name", "rename", "devices", "replicas", "enforceMemory", "allowOptOut"}},
      {"sharing.mps", {"renameByDefault", "failRequestsGreaterThanOne", "resources"}},
      {"sharing.mps.resources[]",
       {"name", "rename", "devices", "replicas", "enforceMemory", "allowOptOut"}},
      {"imex", {"channelIDs", "required"}},
      {"health", {"disabled", "eventTypes", "ignoredXIDs", "criticalXIDs"}},
  };
  return *schema;
}

const Section& SectionAt(std::string_view where) {
  for (const Section& s : Schema()) {
    if (where == s.where) return s;
  }
  std::abort();  // A schema name typo in this file: cannot happen at run time.
}

// Case-insensitive edit distance, for "did you mean".
int Distance(std::string_view a, std::string_view b) {
  std::vector<int> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = static_cast<int>(j);
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = static_cast<int>(i);
    for (size_t j = 1; j <= b.size(); ++j) {
      bool same = std::tolower(static_cast<unsigned char>(a[i - 1])) ==
                  std::tolower(static_cast<unsigned char>(b[j - 1]));
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (same ? 0 : 1)});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

// The message for a key that `where` does not have: where it belongs if it is known elsewhere,
// else the nearest valid key, else the valid keys.
// `shown` is where the mapping is, as the user sees it.
std::string UnknownKeyMessage(std::string_view key, const Section& here, std::string_view shown) {
  std::string best;
  int best_distance = 3;  // suggest only near misses
  for (std::string_view k : here.keys) {
    int d = Distance(key, k);
    if (d < best_distance) best_distance = d, best = std::string(k);
  }
  if (best_distance == 0) {
    return absl::StrCat("unknown key \"", std::string(key), "\": keys are case-sensitive; write \"",
                        best, "\"");
  }
  std::vector<std::string> elsewhere;
  for (const Section& s : Schema()) {
    if (&s == &here) continue;
    if (std::find(s.keys.begin(), s.keys.end(), key) != s.keys.end()) {
      elsewhere.push_back(s.where);
    }
  }
  // Inside sharing.mps, "replicas" belongs under sharing.mps.resources[], not timeSlicing's.
  std::vector<std::string> below;
  for (const std::string& w : elsewhere) {
    if (w.rfind(std::string(here.where) + ".", 0) == 0) below.push_back(w);
  }
  if (!below.empty()) elsewhere = below;
  if (!elsewhere.empty()) {
    return absl::StrCat("\"", std::string(key), "\" does not belong under ", std::string(shown),
                        "; it belongs under ", absl::StrJoin(elsewhere, " or "));
  }
  if (!best.empty()) {
    return absl::StrCat("unknown key \"", std::string(key), "\"; did you mean \"", best, "\"?");
  }
  std::vector<std::string> keys(here.keys.begin(), here.keys.end());
  return absl::StrCat("unknown key \"", std::string(key), "\"; ", std::string(shown), " may hold ",
                      absl::StrJoin(keys, ", "));
}

// ---- Scalars: YAML 1.1 resolution as sigs.k8s.io/yaml (go-yaml v2) does it. ----

enum class Kind { kNull, kBool, kInt, kFloat, kString, kMap, kList, kOther };

bool IsOneOf(const std::string& s, std::initializer_list<const char*> options) {
  for (const char* o : options) {
    if (s == o) return true;
  }
  return false;
}

bool LooksInt(const std::string& s) {
  size_t i = (!s.empty() && (s[0] == '-' || s[0] == '+')) ? 1 : 0;
  if (i >= s.size()) return false;
  bool hex = s.compare(i, 2, "0x") == 0;
  if (hex) i += 2;
  if (i >= s.size()) return false;
  for (; i < s.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (!(hex ? std::isxdigit(c) : std::isdigit(c)) && c != '_') return false;
  }
  return true;
}

bool LooksFloat(const std::string& s) {
  if (IsOneOf(s, {".inf", ".Inf", ".INF", "-.inf", "+.inf", "-.Inf", "+.Inf", "-.INF", "+.INF",
                  ".nan", ".NaN", ".NAN"})) {
    return true;
  }
  size_t i = (!s.empty() && (s[0] == '-' || s[0] == '+')) ? 1 : 0;
  bool digits = false, dot = false;
  for (; i < s.size(); ++i) {
    char c = s[i];
    if (std::isdigit(static_cast<unsigned char>(c)) || c == '_') {
      digits = true;
    } else if (c == '.' && !dot) {
      dot = true;
    } else if ((c == 'e' || c == 'E') && digits) {
      size_t j = i + 1;
      if (j < s.size() && (s[j] == '-' || s[j] == '+')) ++j;
      if (j >= s.size()) return false;
      for (; j < s.size(); ++j) {
        if (!std::isdigit(static_cast<unsigned char>(s[j]))) return false;
      }
      return true;
    } else {
      return false;
    }
  }
  return digits;
}

Kind KindOf(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Null:
      return Kind::kNull;
    case YAML::NodeType::Map:
      return Kind::kMap;
    case YAML::NodeType::Sequence:
      return Kind::kList;
    case YAML::NodeType::Scalar:
      break;
    default:
      return Kind::kOther;
  }
  const std::string& tag = n.Tag();
  const std::string& s = n.Scalar();
  if (tag == "!" || tag == "tag:yaml.org,2002:str") return Kind::kString;
  if (tag == "tag:yaml.org,2002:int") return Kind::kInt;
  if (tag == "tag:yaml.org,2002:bool") return Kind::kBool;
  if (tag == "tag:yaml.org,2002:float") return Kind::kFloat;
  if (tag == "tag:yaml.org,2002:null") return Kind::kNull;
  if (tag != "?") return Kind::kOther;
  if (IsOneOf(s, {"", "~", "null", "Null", "NULL"})) return Kind::kNull;
  if (IsOneOf(s, {"y", "Y", "yes", "Yes", "YES", "true",  "True",  "TRUE",  "on",  "On",  "ON",
                  "n", "N", "no",  "No",  "NO",  "false", "False", "FALSE", "off", "Off", "OFF"})) {
    return Kind::kBool;
  }
  if (LooksInt(s)) return Kind::kInt;
  if (LooksFloat(s)) return Kind::kFloat;
  return Kind::kString;
}

std::string Describe(const YAML::Node& n) {
  switch (KindOf(n)) {
    case Kind::kNull:
      return "no value";
    case Kind::kMap:
      return "a mapping";
    case Kind::kList:
      return "a list";
    case Kind::kBool:
      return absl::StrCat("the boolean ", n.Scalar());
    case Kind::kInt:
    case Kind::kFloat:
      return absl::StrCat("the number ", n.Scalar());
    case Kind::kString: {
      std::string s = n.Scalar();
      if (s.size() > 40) s = s.substr(0, 40) + "...";
      return absl::StrCat("the string \"", s, "\"");
    }
    case Kind::kOther:
      return absl::StrCat("a value tagged ", n.Tag());
  }
  return "an unknown value";
}

// ---- The walker. ----

struct Field {
  YAML::Node key;
  YAML::Node value;
};
using Fields = std::map<std::string, Field>;

std::string Join(const std::string& path, std::string_view key) {
  return path.empty() ? std::string(key) : absl::StrCat(path, ".", std::string(key));
}
std::string Index(const std::string& path, size_t i) { return absl::StrCat(path, "[", i, "]"); }

YAML::Mark At(int line0, int column0) {
  YAML::Mark m;
  m.line = line0;
  m.column = column0;
  return m;
}

class Parser {
 public:
  explicit Parser(std::vector<ConfigError>& errors) : errors_(errors) {}

  void Run(const YAML::Node& root, Config& config);

 private:
  void Error(const std::string& path, const YAML::Node& at, std::string message) {
    YAML::Mark m = at.Mark();
    Error(path, m, std::move(message));
  }
  void Error(const std::string& path, const YAML::Mark& m, std::string message) {
    ConfigError e;
    e.path = path;
    if (m.line >= 0) {
      e.line = m.line + 1;
      e.column = m.column + 1;
    }
    e.message = std::move(message);
    errors_.push_back(std::move(e));
  }
  // The value's position, or its key's when the value is empty (yaml-cpp gives an empty value
  // the position of whatever follows it).
  YAML::Mark MarkOf(const Field& f) { return f.value.IsNull() ? f.key.Mark() : f.value.Mark(); }

  // Reads a mapping against schema section `where`: reports a non-mapping, non-scalar keys,
  // duplicates and unknown keys. A missing section (null) reads as empty.
  Fields MapFields(const YAML::Node& n, const std::string& path, std::string_view where);

  std::optional<bool> Bool(const Field& f, const std::string& path);
  std::optional<std::string> String(const Field& f, const std::string& path);
  std::optional<int64_t> Int(const Field& f, const std::string& path, int64_t min, int64_t max);
  bool ExpectKind(const Field& f, const std::string& path, Kind kind, const char* what);

  void ReadFlags(const Field& f, Flags& flags);
  void ReadPluginFlags(const Field& f, PluginFlags& plugin);
  void ReadGfdFlags(const Field& f, GfdFlags& gfd);
  void ReadResources(const Field& f, Config& config);
  std::vector<ResourcePattern> ReadPatterns(const Field& f, const std::string& path);
  // Reads sharing.timeSlicing or sharing.mps (`path`); returns where each entry's name is.
  std::vector<YAML::Mark> ReadReplicated(const Field& f, const std::string& path, bool mps,
                                         TimeSlicing& out);
  void ReadReplicatedResource(const YAML::Node& n, const std::string& path, bool mps,
                              ReplicatedResource& out);
  // `whole_gpus_only`: a MIG index or UUID is an error (MPS).
  void ReadDevices(const Field& f, const std::string& path, bool whole_gpus_only,
                   DeviceSelector& out);
  // The checks that need the whole file: entry names against resources.gpus, the sharing
  // sections against each other and against flags.migStrategy.
  void CheckSharing(const Fields& top, const Fields& sharing, Config& config);
  void CheckNames(const TimeSlicing& section, const std::string& path,
                  const std::vector<YAML::Mark>& name_marks, const Config& config);
  void ReadImex(const Field& f, Config::Imex& imex);
  void ReadHealth(const Field& f, Config::Health& health);
  std::optional<std::string> ResourceName(const Field& f, const std::string& path);
  std::vector<int64_t> IntList(const Field& f, const std::string& path, int64_t min, int64_t max);

  std::vector<ConfigError>& errors_;
  // Where each sharing.<section>.resources[i].name is, for checks after the walk.
  std::vector<YAML::Mark> time_slicing_names_;
  std::vector<YAML::Mark> mps_names_;
};

Fields Parser::MapFields(const YAML::Node& n, const std::string& path, std::string_view where) {
  Fields out;
  if (n.IsNull()) return out;
  if (!n.IsMap()) {
    Error(path, n, absl::StrCat("expected a mapping of keys, got ", Describe(n)));
    return out;
  }
  const Section& section = SectionAt(where);
  for (auto it = n.begin(); it != n.end(); ++it) {
    // Copies, not references: yaml-cpp's iterator hands out a temporary pair proxy, and a
    // reference to its members dangles (AddressSanitizer found this through the fuzzer).
    const YAML::Node key = it->first;
    const YAML::Node value = it->second;
    if (!key.IsScalar()) {
      Error(path, key, absl::StrCat("a key must be a plain name, got ", Describe(key)));
      continue;
    }
    const std::string& name = key.Scalar();
    const std::string key_path = Join(path, name);
    if (std::find(section.keys.begin(), section.keys.end(), name) == section.keys.end()) {
      Error(key_path, key, UnknownKeyMessage(name, section, path.empty() ? "the top level" : path));
      continue;
    }
    auto [prev, inserted] = out.emplace(name, Field{key, value});
    if (!inserted) {
      Error(key_path, key,
            absl::StrCat("duplicate key \"", name, "\" (first at line ",
                         prev->second.key.Mark().line + 1, "); keep one"));
    }
  }
  return out;
}

bool Parser::ExpectKind(const Field& f, const std::string& path, Kind kind, const char* what) {
  Kind k = KindOf(f.value);
  if (k == kind) return true;
  std::string hint;
  if (kind == Kind::kBool && k == Kind::kString &&
      IsOneOf(f.value.Scalar(), {"true", "false", "True", "False"})) {
    hint = "; remove the quotes";
  } else if (kind == Kind::kInt && k == Kind::kString && LooksInt(f.value.Scalar())) {
    hint = "; remove the quotes";
  } else if (kind == Kind::kString && k != Kind::kNull && k != Kind::kMap && k != Kind::kList) {
    hint = absl::StrCat("; quote it (\"", f.value.Scalar(), "\") if a string is meant");
  }
  Error(path, MarkOf(f), absl::StrCat("expected ", what, ", got ", Describe(f.value), hint));
  return false;
}

std::optional<bool> Parser::Bool(const Field& f, const std::string& path) {
  if (!ExpectKind(f, path, Kind::kBool, "true or false")) return std::nullopt;
  const std::string& s = f.value.Scalar();
  return IsOneOf(s, {"y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"});
}

std::optional<std::string> Parser::String(const Field& f, const std::string& path) {
  if (!ExpectKind(f, path, Kind::kString, "a string")) return std::nullopt;
  return f.value.Scalar();
}

std::optional<int64_t> Parser::Int(const Field& f, const std::string& path, int64_t min,
                                   int64_t max) {
  if (!ExpectKind(f, path, Kind::kInt, "a whole number")) return std::nullopt;
  std::string s = f.value.Scalar();
  s.erase(std::remove(s.begin(), s.end(), '_'), s.end());
  errno = 0;
  char* end = nullptr;
  long long v = std::strtoll(s.c_str(), &end, 0);
  if (errno == ERANGE || end == s.c_str() || *end != '\0' || v < min || v > max) {
    std::string range = max == std::numeric_limits<int64_t>::max()
                            ? absl::StrCat(">= ", min)
                            : absl::StrCat("between ", min, " and ", max);
    Error(path, MarkOf(f), absl::StrCat("must be ", range, ", got ", f.value.Scalar()));
    return std::nullopt;
  }
  return v;
}

std::vector<int64_t> Parser::IntList(const Field& f, const std::string& path, int64_t min,
                                     int64_t max) {
  std::vector<int64_t> out;
  if (!ExpectKind(f, path, Kind::kList, "a list of numbers")) return out;
  for (size_t i = 0; i < f.value.size(); ++i) {
    Field item{f.key, f.value[i]};
    if (auto v = Int(item, Index(path, i), min, max)) out.push_back(*v);
  }
  return out;
}

template <typename E>
struct Choice {
  const char* text;
  E value;
};

template <typename E, size_t N>
std::optional<E> Pick(std::string_view text, const Choice<E> (&choices)[N]) {
  for (const auto& c : choices) {
    if (text == c.text) return c.value;
  }
  return std::nullopt;
}

template <typename E, size_t N>
std::string ChoiceList(const Choice<E> (&choices)[N]) {
  std::vector<std::string> names;
  for (const auto& c : choices) names.push_back(c.text);
  return absl::StrJoin(names, ", ");
}

constexpr Choice<DeviceListStrategy> kListStrategies[] = {
    {"envvar", DeviceListStrategy::kEnvvar},
    {"volume-mounts", DeviceListStrategy::kVolumeMounts},
    {"cdi-annotations", DeviceListStrategy::kCdiAnnotations},
    {"cdi-cri", DeviceListStrategy::kCdiCri},
};
constexpr Choice<DeviceIdStrategy> kIdStrategies[] = {
    {"uuid", DeviceIdStrategy::kUuid},
    {"index", DeviceIdStrategy::kIndex},
};
constexpr Choice<int> kMigStrategies[] = {{"none", 0}, {"single", 1}, {"mixed", 2}};
constexpr Choice<int> kDiscoveryStrategies[] = {{"auto", 0}, {"nvml", 1}, {"tegra", 2}};
constexpr Choice<int> kHealthEvents[] = {{"EventTypeXidCriticalError", 0},
                                         {"EventTypeDoubleBitEccError", 1},
                                         {"EventTypeSingleBitEccError", 2}};

void Parser::Run(const YAML::Node& root, Config& config) {
  if (!root.IsMap() && !root.IsNull()) {
    Error("", root,
          absl::StrCat("expected a mapping at the top level (version: v1, flags, sharing, ...), "
                       "got ",
                       Describe(root)));
    return;
  }
  Fields top = MapFields(root, "", "the top level");
  if (auto it = top.find("version"); it == top.end()) {
    Error("version", At(0, 0), "missing; the first line should be \"version: v1\"");
  } else if (auto v = String(it->second, "version")) {
    if (*v != "v1") {
      Error("version", MarkOf(it->second),
            absl::StrCat("unknown version \"", *v, "\"; the only version is v1"));
    }
    config.version = *v;
  }
  if (auto it = top.find("flags"); it != top.end()) ReadFlags(it->second, config.flags);
  if (auto it = top.find("resources"); it != top.end()) ReadResources(it->second, config);
  if (auto it = top.find("imex"); it != top.end()) ReadImex(it->second, config.imex);
  if (auto it = top.find("health"); it != top.end()) ReadHealth(it->second, config.health);
  Fields sharing;
  if (auto it = top.find("sharing"); it != top.end()) {
    sharing = MapFields(it->second.value, "sharing", "sharing");
    if (auto ts = sharing.find("timeSlicing"); ts != sharing.end()) {
      time_slicing_names_ =
          ReadReplicated(ts->second, "sharing.timeSlicing", false, config.time_slicing);
    }
    if (auto mps = sharing.find("mps"); mps != sharing.end()) {
      mps_names_ = ReadReplicated(mps->second, "sharing.mps", true, config.mps.emplace());
    }
  }
  CheckSharing(top, sharing, config);
}

void Parser::CheckSharing(const Fields& top, const Fields& sharing, Config& config) {
  CheckNames(config.time_slicing, "sharing.timeSlicing", time_slicing_names_, config);
  auto mps = sharing.find("mps");
  if (mps == sharing.end()) return;
  CheckNames(*config.mps, "sharing.mps", mps_names_, config);
  if (auto ts = sharing.find("timeSlicing"); ts != sharing.end() &&
                                             !config.time_slicing.resources.empty() &&
                                             !config.mps->resources.empty()) {
    Error("sharing.mps", mps->second.key,
          absl::StrCat("sharing.mps and sharing.timeSlicing (line ", ts->second.key.Mark().line + 1,
                       ") cannot be combined in one config: NVIDIA's plugin silently uses MPS and "
                       "ignores timeSlicing. Keep one of them, or give the nodes that need the "
                       "other a separate named config (the node label "
                       "nvidia.com/device-plugin.config picks one)"));
  }
  if (config.flags.mig_strategy == "mixed") {
    int line = 0;
    if (auto f = top.find("flags");
        f != top.end() && f->second.value.IsMap() && f->second.value["migStrategy"]) {
      line = f->second.value["migStrategy"].Mark().line + 1;
    }
    Error("sharing.mps", mps->second.key,
          absl::StrCat(
              "MPS is not supported for MIG devices, and flags.migStrategy is mixed (line ", line,
              "); use migStrategy none (or single) with sharing.mps, or share MIG "
              "devices with sharing.timeSlicing"));
  }
}

// Every entry must name a resource this config can produce, or it would silently share nothing
// (NVIDIA ignores such entries). MIG names are for time-slicing only.
void Parser::CheckNames(const TimeSlicing& section, const std::string& path,
                        const std::vector<YAML::Mark>& name_marks, const Config& config) {
  const bool mps = path == "sharing.mps";
  std::set<std::string> known, mig_only;
  for (const ResourcePattern& p : config.mig_resources) known.insert(p.name);
  mig_only = known;
  for (const ResourcePattern& p : config.gpu_resources) {
    known.insert(p.name);
    mig_only.erase(p.name);
  }
  for (size_t i = 0; i < section.resources.size(); ++i) {
    const ReplicatedResource& r = section.resources[i];
    const std::string name_path = Index(path + ".resources", i) + ".name";
    if (r.name.empty()) continue;
    if (IsMigResourceName(r.name) || mig_only.count(r.name)) {
      if (mps) {
        Error(name_path, name_marks[i],
              absl::StrCat("\"", r.name,
                           "\" is a MIG resource; MPS is not supported for MIG "
                           "devices: share whole GPUs (e.g. nvidia.com/gpu) with MPS, "
                           "or MIG devices with sharing.timeSlicing"));
      }
      continue;
    }
    if (known.count(r.name)) continue;
    std::vector<std::string> names(known.begin(), known.end());
    Error(name_path, name_marks[i],
          absl::StrCat("\"", r.name, "\" is not a resource of this config (resources.gpus names: ",
                       absl::StrJoin(names, ", "), "; MIG resources are nvidia.com/mig-*)"));
  }
}

void Parser::ReadFlags(const Field& f, Flags& flags) {
  const std::string p = "flags";
  Fields fs = MapFields(f.value, p, "flags");
  for (const auto& [key, field] : fs) {
    const std::string path = Join(p, key);
    if (key == "migStrategy") {
      if (auto v = String(field, path)) {
        if (!Pick(*v, kMigStrategies)) {
          Error(path, MarkOf(field),
                absl::StrCat("unknown MIG strategy \"", *v, "\"; use one of ",
                             ChoiceList(kMigStrategies)));
        }
        flags.mig_strategy = *v;
      }
    } else if (key == "failOnInitError") {
      if (auto v = Bool(field, path)) flags.fail_on_init_error = *v;
    } else if (key == "mpsRoot") {
      if (auto v = String(field, path)) flags.mps_root = *v;
    } else if (key == "nvidiaDriverRoot") {
      if (auto v = String(field, path)) flags.nvidia_driver_root = *v;
    } else if (key == "nvidiaDevRoot") {
      if (auto v = String(field, path)) flags.nvidia_dev_root = *v;
    } else if (key == "gdrcopyEnabled") {
      if (auto v = Bool(field, path)) flags.gdrcopy_enabled = *v;
    } else if (key == "gdsEnabled") {
      if (auto v = Bool(field, path)) flags.gds_enabled = *v;
    } else if (key == "mofedEnabled") {
      if (auto v = Bool(field, path)) flags.mofed_enabled = *v;
    } else if (key == "useNodeFeatureAPI") {
      if (auto v = Bool(field, path)) flags.use_node_feature_api = *v;
    } else if (key == "deviceDiscoveryStrategy") {
      if (auto v = String(field, path)) {
        if (!Pick(*v, kDiscoveryStrategies)) {
          Error(path, MarkOf(field),
                absl::StrCat("unknown device discovery strategy \"", *v, "\"; use one of ",
                             ChoiceList(kDiscoveryStrategies)));
        }
        flags.device_discovery_strategy = *v;
      }
    } else if (key == "plugin") {
      ReadPluginFlags(field, flags.plugin);
    } else if (key == "gfd") {
      ReadGfdFlags(field, flags.gfd);
    }
  }
}

void Parser::ReadPluginFlags(const Field& f, PluginFlags& plugin) {
  const std::string p = "flags.plugin";
  Fields fs = MapFields(f.value, p, "flags.plugin");
  for (const auto& [key, field] : fs) {
    const std::string path = Join(p, key);
    if (key == "passDeviceSpecs") {
      if (auto v = Bool(field, path)) plugin.pass_device_specs = *v;
    } else if (key == "deviceListStrategy") {
      // NVIDIA accepts one string or a list of strings.
      struct Item {
        std::string text;
        Field field;
        std::string path;
      };
      std::vector<Item> items;
      if (KindOf(field.value) == Kind::kList) {
        for (size_t i = 0; i < field.value.size(); ++i) {
          Field item{field.key, field.value[i]};
          if (auto v = String(item, Index(path, i))) items.push_back({*v, item, Index(path, i)});
        }
        if (field.value.size() == 0) {
          Error(path, MarkOf(field),
                absl::StrCat("empty list; name at least one of ", ChoiceList(kListStrategies)));
        }
      } else if (auto v = String(field, path)) {
        items.push_back({*v, field, path});
      }
      std::vector<DeviceListStrategy> out;
      bool ok = !items.empty();
      for (const auto& [text, item, item_path] : items) {
        auto s = Pick(text, kListStrategies);
        if (!s) {
          ok = false;
          Error(item_path, MarkOf(item),
                absl::StrCat("unknown device list strategy \"", text, "\"; use one or more of ",
                             ChoiceList(kListStrategies)));
        } else if (std::find(out.begin(), out.end(), *s) == out.end()) {
          out.push_back(*s);
        }
      }
      if (ok) plugin.device_list_strategy = out;
    } else if (key == "deviceIDStrategy") {
      if (auto v = String(field, path)) {
        if (auto s = Pick(*v, kIdStrategies)) {
          plugin.device_id_strategy = *s;
        } else {
          Error(path, MarkOf(field),
                absl::StrCat("unknown device ID strategy \"", *v, "\"; use one of ",
                             ChoiceList(kIdStrategies)));
        }
      }
    } else if (key == "cdiAnnotationPrefix") {
      if (auto v = String(field, path)) plugin.cdi_annotation_prefix = *v;
    } else if (key == "nvidiaCTKPath") {
      if (auto v = String(field, path)) plugin.nvidia_ctk_path = *v;
    } else if (key == "containerDriverRoot") {
      if (auto v = String(field, path)) plugin.container_driver_root = *v;
    } else if (key == "kubeletSocket") {
      if (auto v = String(field, path)) plugin.kubelet_socket = *v;
    } else if (key == "cdiFeatureFlags") {
      if (auto v = String(field, path)) plugin.cdi_feature_flags = *v;
    }
  }
}

void Parser::ReadGfdFlags(const Field& f, GfdFlags& gfd) {
  const std::string p = "flags.gfd";
  Fields fs = MapFields(f.value, p, "flags.gfd");
  for (const auto& [key, field] : fs) {
    const std::string path = Join(p, key);
    if (key == "oneshot") {
      if (auto v = Bool(field, path)) gfd.oneshot = *v;
    } else if (key == "noTimestamp") {
      if (auto v = Bool(field, path)) gfd.no_timestamp = *v;
    } else if (key == "sleepInterval") {
      // NVIDIA reads a bare number as nanoseconds, so `sleepInterval: 60` would mean 60ns; that
      // is never what was meant, so a unit is required here.
      Kind k = KindOf(field.value);
      if (k == Kind::kInt || k == Kind::kFloat) {
        Error(path, MarkOf(field),
              absl::StrCat("a duration needs a unit (NVIDIA would read ", field.value.Scalar(),
                           " as nanoseconds); write e.g. ", field.value.Scalar(), "s"));
      } else if (auto v = String(field, path)) {
        auto d = ParseDuration(*v);
        if (!d.ok()) {
          Error(path, MarkOf(field), std::string(d.status().message()));
        } else {
          gfd.sleep_interval = *d;
        }
      }
    } else if (key == "outputFile") {
      if (auto v = String(field, path)) gfd.output_file = *v;
    } else if (key == "machineTypeFile") {
      if (auto v = String(field, path)) gfd.machine_type_file = *v;
    }
  }
}

std::optional<std::string> Parser::ResourceName(const Field& f, const std::string& path) {
  auto text = String(f, path);
  if (!text) return std::nullopt;
  auto name = NormalizeResourceName(*text);
  if (!name.ok()) {
    Error(path, MarkOf(f), std::string(name.status().message()));
    return std::nullopt;
  }
  return *name;
}

std::vector<ResourcePattern> Parser::ReadPatterns(const Field& f, const std::string& path) {
  std::vector<ResourcePattern> out;
  if (!ExpectKind(f, path, Kind::kList, "a list of {pattern, name}")) return out;
  for (size_t i = 0; i < f.value.size(); ++i) {
    const std::string ip = Index(path, i);
    const YAML::Node item = f.value[i];
    Fields fs = MapFields(item, ip, "resources.gpus[]");
    if (!item.IsMap()) continue;
    ResourcePattern rp;
    bool ok = true;
    for (const char* required : {"pattern", "name"}) {
      if (!fs.count(required)) {
        ok = false;
        Error(ip, item, absl::StrCat("missing \"", required, "\""));
      }
    }
    if (auto it = fs.find("pattern"); it != fs.end()) {
      if (auto v = String(it->second, ip + ".pattern")) {
        if (v->empty()) {
          ok = false;
          Error(ip + ".pattern", MarkOf(it->second), "empty pattern; \"*\" matches every GPU");
        }
        rp.pattern = *v;
      } else {
        ok = false;
      }
    }
    if (auto it = fs.find("name"); it != fs.end()) {
      if (auto v = ResourceName(it->second, ip + ".name")) {
        rp.name = *v;
      } else {
        ok = false;
      }
    }
    if (ok) out.push_back(rp);
  }
  return out;
}

void Parser::ReadResources(const Field& f, Config& config) {
  Fields fs = MapFields(f.value, "resources", "resources");
  if (auto it = fs.find("gpus"); it != fs.end()) {
    auto gpus = ReadPatterns(it->second, "resources.gpus");
    // As NVIDIA: an empty list keeps the default "*" -> nvidia.com/gpu.
    if (!gpus.empty()) config.gpu_resources = std::move(gpus);
  }
  if (auto it = fs.find("mig"); it != fs.end()) {
    config.mig_resources = ReadPatterns(it->second, "resources.mig");
  }
}

std::vector<YAML::Mark> Parser::ReadReplicated(const Field& f, const std::string& path, bool mps,
                                               TimeSlicing& out) {
  std::vector<YAML::Mark> name_marks;
  Fields fs = MapFields(f.value, path, path);
  if (auto it = fs.find("renameByDefault"); it != fs.end()) {
    if (auto v = Bool(it->second, path + ".renameByDefault")) out.rename_by_default = *v;
  }
  if (auto it = fs.find("failRequestsGreaterThanOne"); it != fs.end()) {
    if (auto v = Bool(it->second, path + ".failRequestsGreaterThanOne")) {
      out.fail_requests_greater_than_one = *v;
      out.fail_requests_set = true;
    }
  }
  const std::string rp = path + ".resources";
  auto it = fs.find("resources");
  if (it == fs.end()) {
    if (f.value.IsMap() || f.value.IsNull()) {
      Error(path, f.key,
            "no resources; add resources: [{name: nvidia.com/gpu, replicas: N}] or remove the "
            "section");
    }
    return name_marks;
  }
  if (!ExpectKind(it->second, rp, Kind::kList, "a list of {name, replicas, ...}")) {
    return name_marks;
  }
  if (it->second.value.size() == 0) {
    Error(rp, MarkOf(it->second), "empty list; add at least one {name, replicas}");
  }
  for (size_t i = 0; i < it->second.value.size(); ++i) {
    ReplicatedResource r;
    const YAML::Node entry = it->second.value[i];
    ReadReplicatedResource(entry, Index(rp, i), mps, r);
    YAML::Mark name_mark = entry.Mark();
    if (entry.IsMap() && entry["name"]) name_mark = entry["name"].Mark();
    name_marks.push_back(name_mark);
    out.resources.push_back(std::move(r));
  }
  return name_marks;
}

void Parser::ReadReplicatedResource(const YAML::Node& n, const std::string& path, bool mps,
                                    ReplicatedResource& out) {
  out.line = n.Mark().line + 1;
  Fields fs =
      MapFields(n, path, mps ? "sharing.mps.resources[]" : "sharing.timeSlicing.resources[]");
  if (!n.IsMap()) {
    if (n.IsNull()) Error(path, n, "empty entry; write {name: nvidia.com/gpu, replicas: N}");
    return;
  }
  for (const char* required : {"name", "replicas"}) {
    if (!fs.count(required)) Error(path, n, absl::StrCat("missing \"", required, "\""));
  }
  for (const auto& [key, field] : fs) {
    const std::string kp = Join(path, key);
    if (key == "name") {
      if (auto v = ResourceName(field, kp)) out.name = *v;
    } else if (key == "rename") {
      if (auto v = ResourceName(field, kp)) out.rename = *v;
    } else if (key == "replicas") {
      auto v = Int(field, kp, 1, kMaxReplicas);
      if (!v) continue;
      out.replicas = static_cast<int>(*v);
      if (mps && *v > kMaxMpsReplicas) {
        Error(kp, MarkOf(field),
              absl::StrCat("got ", *v, "; an MPS server accepts at most ", kMaxMpsReplicas,
                           " clients per GPU on compute capability 7.0 (Volta) and newer, ",
                           kMaxMpsReplicasPreVolta,
                           " before, and each replica is one client: use at most ", kMaxMpsReplicas,
                           " (sharing.timeSlicing allows up to ", kMaxReplicas, ")"));
      }
    } else if (key == "devices") {
      ReadDevices(field, kp, mps, out.devices);
    } else if (key == "enforceMemory") {
      out.enforce_memory = Bool(field, kp);
    } else if (key == "allowOptOut") {
      if (auto v = Bool(field, kp)) out.allow_opt_out = *v;
    }
  }
}

bool AllDigits(std::string_view s) {
  return !s.empty() && s.size() <= 9 &&
         std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// Go's uuid.Parse accepts the 36-character dashed form and 32 bare hex digits.
bool IsUuidBody(std::string_view s) {
  auto hex = [](char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0; };
  if (s.size() == 32) return std::all_of(s.begin(), s.end(), hex);
  if (s.size() != 36) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? s[i] != '-' : !hex(s[i])) return false;
  }
  return true;
}

// NVIDIA's ReplicatedDeviceRef forms: a GPU index "3", a MIG index "0:1", a GPU UUID, or a MIG
// UUID (MIG-<uuid> or MIG-GPU-<uuid>/<gi>/<ci>).
bool IsDeviceRef(std::string_view s) {
  if (AllDigits(s)) return true;
  if (size_t colon = s.find(':'); colon != std::string_view::npos) {
    return AllDigits(s.substr(0, colon)) && AllDigits(s.substr(colon + 1));
  }
  if (s.rfind("GPU-", 0) == 0) return IsUuidBody(s.substr(4));
  if (s.rfind("MIG-", 0) == 0) {
    std::string_view rest = s.substr(4);
    if (IsUuidBody(rest)) return true;
    size_t a = rest.find('/');
    if (a == std::string_view::npos) return false;
    size_t b = rest.find('/', a + 1);
    if (b == std::string_view::npos) return false;
    std::string_view gpu = rest.substr(0, a);
    return gpu.rfind("GPU-", 0) == 0 && IsUuidBody(gpu.substr(4)) &&
           AllDigits(rest.substr(a + 1, b - a - 1)) && AllDigits(rest.substr(b + 1));
  }
  return false;
}

void Parser::ReadDevices(const Field& f, const std::string& path, bool whole_gpus_only,
                         DeviceSelector& out) {
  const char* expected = "\"all\", a count of GPUs, or a list of GPU indices / UUIDs";
  switch (KindOf(f.value)) {
    case Kind::kString:
      if (f.value.Scalar() == "all") {
        out = DeviceSelector{};
      } else {
        Error(path, MarkOf(f),
              absl::StrCat("expected ", expected, ", got ", Describe(f.value),
                           IsDeviceRef(f.value.Scalar())
                               ? "; a single device needs a list: [" + f.value.Scalar() + "]"
                               : ""));
      }
      return;
    case Kind::kInt:
      if (auto v = Int(f, path, 1, 1 << 20)) {
        out.all = false;
        out.count = static_cast<int>(*v);
      }
      return;
    case Kind::kList: {
      std::vector<std::string> ids;
      std::map<std::string, int> seen;
      for (size_t i = 0; i < f.value.size(); ++i) {
        const std::string ip = Index(path, i);
        Field item{f.key, f.value[i]};
        std::string id;
        Kind k = KindOf(item.value);
        if (k == Kind::kInt) {
          auto v = Int(item, ip, 0, 1 << 20);
          if (!v) continue;
          id = std::to_string(*v);
        } else if (k == Kind::kString && IsDeviceRef(item.value.Scalar())) {
          id = item.value.Scalar();
        } else {
          Error(ip, MarkOf(item),
                absl::StrCat("expected a GPU index (0), a MIG index (0:1) or a GPU/MIG UUID "
                             "(GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx), got ",
                             Describe(item.value)));
          continue;
        }
        if (whole_gpus_only && IsMigDeviceRef(id)) {
          Error(ip, MarkOf(item),
                absl::StrCat(id,
                             " is a MIG device; MPS is not supported for MIG devices: list "
                             "whole GPUs (an index such as 0, or GPU-<uuid>)"));
          continue;
        }
        if (auto [it, inserted] = seen.emplace(id, static_cast<int>(i)); !inserted) {
          Error(ip, MarkOf(item),
                absl::StrCat("device ", id, " is listed twice (also at ", path, "[", it->second,
                             "])"));
          continue;
        }
        ids.push_back(id);
      }
      if (f.value.size() == 0) {
        Error(path, MarkOf(f), "empty list; omit devices (or write \"all\") to share every GPU");
      }
      out.all = false;
      out.count.reset();
      out.ids = std::move(ids);
      return;
    }
    default:
      Error(path, MarkOf(f), absl::StrCat("expected ", expected, ", got ", Describe(f.value)));
  }
}

void Parser::ReadImex(const Field& f, Config::Imex& imex) {
  Fields fs = MapFields(f.value, "imex", "imex");
  if (auto it = fs.find("channelIDs"); it != fs.end()) {
    for (int64_t v : IntList(it->second, "imex.channelIDs", 0, std::numeric_limits<int>::max())) {
      imex.channel_ids.push_back(static_cast<int>(v));
    }
    // NVIDIA's own rule (AssertChannelIDsValid).
    if (!(imex.channel_ids.empty() || (imex.channel_ids.size() == 1 && imex.channel_ids[0] == 0))) {
      Error("imex.channelIDs", MarkOf(it->second), "must be [] or [0]");
    }
  }
  if (auto it = fs.find("required"); it != fs.end()) {
    if (auto v = Bool(it->second, "imex.required")) imex.required = *v;
  }
}

void Parser::ReadHealth(const Field& f, Config::Health& health) {
  Fields fs = MapFields(f.value, "health", "health");
  const int64_t kMaxXid = std::numeric_limits<int64_t>::max();
  for (const auto& [key, field] : fs) {
    const std::string path = Join("health", key);
    if (key == "disabled") {
      if (auto v = Bool(field, path)) health.disabled = *v;
    } else if (key == "eventTypes") {
      if (!ExpectKind(field, path, Kind::kList, "a list of event types")) continue;
      for (size_t i = 0; i < field.value.size(); ++i) {
        Field item{field.key, field.value[i]};
        auto v = String(item, Index(path, i));
        if (!v) continue;
        if (!Pick(*v, kHealthEvents)) {
          Error(Index(path, i), MarkOf(item),
                absl::StrCat("unknown event type \"", *v, "\"; use ", ChoiceList(kHealthEvents)));
          continue;
        }
        health.event_types.push_back(*v);
      }
    } else if (key == "ignoredXIDs") {
      for (int64_t v : IntList(field, path, 0, kMaxXid)) health.ignored_xids.push_back(v);
    } else if (key == "criticalXIDs") {
      if (KindOf(field.value) == Kind::kString) {
        std::string s = field.value.Scalar();
        for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        if (s != "all") {
          Error(path, MarkOf(field), "expected \"all\" or a list of XIDs");
        }
        health.critical_xids_all = true;
      } else {
        health.critical_xids_all = false;
        for (int64_t v : IntList(field, path, 0, kMaxXid)) health.critical_xids.push_back(v);
      }
    }
  }
}

bool IsDns1123Label(std::string_view s) {
  if (s.empty() || s.size() > 63) return false;
  auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (!alnum(s.front()) || !alnum(s.back())) return false;
  return std::all_of(s.begin(), s.end(), [&](char c) { return alnum(c) || c == '-'; });
}

bool IsDns1123Subdomain(std::string_view s) {
  if (s.empty() || s.size() > 253) return false;
  size_t start = 0;
  while (true) {
    size_t dot = s.find('.', start);
    std::string_view label = s.substr(start, dot == std::string_view::npos ? dot : dot - start);
    if (!IsDns1123Label(label)) return false;
    if (dot == std::string_view::npos) return true;
    start = dot + 1;
  }
}

// The 1-based line of a "---" that starts a second document, or 0. Document markers sit at column
// 0; a "---" before any content only opens the first document.
int SecondDocumentLine(std::string_view text) {
  bool content = false;
  int line = 0;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view l = text.substr(pos, end - pos);
    ++line;
    bool marker =
        l.substr(0, 3) == "---" && (l.size() == 3 || l[3] == ' ' || l[3] == '\t' || l[3] == '\r');
    if (marker && content) return line;
    if (marker) {
      content = l.find_first_not_of(" \t\r", 3) != std::string_view::npos &&
                l[l.find_first_not_of(" \t\r", 3)] != '#';
    } else {
      size_t first = l.find_first_not_of(" \t\r");
      if (first != std::string_view::npos && l[first] != '#' && l[first] != '%') content = true;
    }
    pos = end + 1;
  }
  return 0;
}

}  // namespace

absl::StatusOr<std::string> NormalizeResourceName(std::string_view name) {
  constexpr std::string_view kPrefix = "nvidia.com/";
  std::string full(name);
  if (full.rfind(kPrefix, 0) != 0) full = absl::StrCat(std::string(kPrefix), full);
  if (full.size() > 63) {
    return absl::InvalidArgumentError(absl::StrCat("resource name \"", full, "\" is ", full.size(),
                                                   " characters; at most 63 are allowed"));
  }
  std::string_view rest = std::string_view(full).substr(kPrefix.size());
  if (!IsDns1123Subdomain(rest)) {
    std::string why = rest.find('/') != std::string_view::npos
                          ? "resource names live in the nvidia.com/ domain (a name without it "
                            "gets the prefix, as in NVIDIA's plugin)"
                          : "after nvidia.com/ use lowercase letters, digits, '-' and '.', "
                            "starting and ending with a letter or digit";
    return absl::InvalidArgumentError(
        absl::StrCat("invalid resource name \"", std::string(name), "\": ", why));
  }
  return full;
}

bool IsMigResourceName(std::string_view name) {
  return name.substr(0, std::string_view("nvidia.com/mig-").size()) == "nvidia.com/mig-";
}

bool IsMigDeviceRef(std::string_view id) {
  return id.find(':') != std::string_view::npos || id.substr(0, 4) == "MIG-";
}

bool MatchesPattern(std::string_view pattern, std::string_view product) {
  // Unanchored glob: try every start position; greedy-with-backtracking on '*'.
  auto match_at = [&](size_t start) {
    size_t p = 0, s = start, star = std::string_view::npos, mark = 0;
    while (p < pattern.size()) {
      if (pattern[p] == '*') {
        star = p++;
        mark = s;
      } else if (s < product.size() && pattern[p] == product[s]) {
        ++p, ++s;
      } else if (star != std::string_view::npos && mark < product.size()) {
        p = star + 1;
        s = ++mark;
      } else {
        return false;
      }
    }
    return true;  // unanchored at the end as well
  };
  for (size_t start = 0; start <= product.size(); ++start) {
    if (match_at(start)) return true;
  }
  return false;
}

ParseResult Parse(std::string_view yaml_text) {
  ParseResult result;
  if (yaml_text.size() > kMaxConfigBytes) {
    result.errors.push_back(
        {"", 0, 0,
         absl::StrCat("file is ", yaml_text.size(), " bytes; a config file is at most ",
                      kMaxConfigBytes, " (a ConfigMap holds at most 1 MiB)")});
    return result;
  }
  if (yaml_text.find('\0') != std::string_view::npos) {
    // yaml-cpp stops at a NUL without complaint; a binary file must not read as "empty".
    size_t at = yaml_text.find('\0');
    int line = 1 + static_cast<int>(std::count(yaml_text.begin(), yaml_text.begin() + at, '\n'));
    result.errors.push_back({"", line, 0, "the file contains a NUL byte; it is not YAML text"});
    return result;
  }
  if (int line = SecondDocumentLine(yaml_text); line > 0) {
    result.errors.push_back(
        {"", line, 1, "more than one YAML document (---); a config file holds one"});
    return result;
  }
  // YAML::Load, not LoadAll: yaml-cpp 0.7's LoadAll can loop forever, appending null documents,
  // on some malformed input (found by the fuzzer; fixed upstream by yaml-cpp PR #1319).
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml_text));
  } catch (const YAML::Exception& e) {
    ConfigError err;
    if (e.mark.line >= 0) {
      err.line = e.mark.line + 1;
      err.column = e.mark.column + 1;
    }
    err.message = absl::StrCat("invalid YAML: ", e.msg.empty() ? std::string(e.what()) : e.msg);
    result.errors.push_back(std::move(err));
    return result;
  } catch (const std::exception& e) {
    result.errors.push_back({"", 0, 0, absl::StrCat("invalid YAML: ", e.what())});
    return result;
  }
  try {
    Parser(result.errors).Run(root, result.config);
  } catch (const std::exception& e) {
    // The walker only reads nodes it has type-checked; this is a last line of defence.
    result.errors.push_back({"", 0, 0, absl::StrCat("invalid config: ", e.what())});
  }
  std::stable_sort(result.errors.begin(), result.errors.end(),
                   [](const ConfigError& a, const ConfigError& b) {
                     return std::tie(a.line, a.column) < std::tie(b.line, b.column);
                   });
  return result;
}

ParseResult ParseFile(const std::string& path) {
  ParseResult result;
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    result.errors.push_back({"", 0, 0, absl::StrCat("cannot open ", path)});
    return result;
  }
  std::string text;
  char buf[65536];
  while (in.read(buf, sizeof buf) || in.gcount() > 0) {
    text.append(buf, static_cast<size_t>(in.gcount()));
    if (text.size() > kMaxConfigBytes) break;  // Parse reports the size; stop reading.
  }
  if (in.bad()) {
    result.errors.push_back({"", 0, 0, absl::StrCat("cannot read ", path)});
    return result;
  }
  return Parse(text);
}

std::string FormatError(const std::string& source, const ConfigError& error) {
  std::string out = source;
  if (error.line > 0) absl::StrAppend(&out, ":", error.line, ":", error.column);
  absl::StrAppend(&out, ": ");
  if (!error.path.empty()) absl::StrAppend(&out, error.path, ": ");
  absl::StrAppend(&out, error.message);
  return out;
}

std::string_view ToString(DeviceListStrategy s) {
  for (const auto& c : kListStrategies) {
    if (c.value == s) return c.text;
  }
  return "unknown";
}

std::string_view ToString(DeviceIdStrategy s) {
  for (const auto& c : kIdStrategies) {
    if (c.value == s) return c.text;
  }
  return "unknown";
}

}  // namespace slicer::config
