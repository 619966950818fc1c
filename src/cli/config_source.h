// Which config file the device plugin runs with: a single --config-file, or one of several named
// files in --config-dir chosen the way NVIDIA's config-manager does it — the node label
// `nvidia.com/device-plugin.config` names the file; without a label the fallback strategies
// apply in order: `named` (--default-config), `single` (the only file in the directory),
// `empty` (built-in defaults). With --node-name the label is followed through the API server and
// a change triggers a reload.
#ifndef SLICER_CLI_CONFIG_SOURCE_H_
#define SLICER_CLI_CONFIG_SOURCE_H_

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "src/k8s/api_client.h"

namespace slicer::cli {

struct ConfigSourceOptions {
  std::string config_file;
  std::string config_dir;
  std::string default_config;
  std::string fallback_strategies = "named,single";
  std::string node_name;
  std::string node_label = "nvidia.com/device-plugin.config";
  std::string api_server;  // override of the in-cluster address
};

// Pure selection: the path to parse ("" means built-in defaults), given the directory's file
// names and the label's value. Errors name the label value or the strategies that failed.
absl::StatusOr<std::string> SelectConfigFile(const std::string& dir,
                                             const std::vector<std::string>& names,
                                             const std::optional<std::string>& label,
                                             const std::string& default_config,
                                             const std::string& fallback_strategies);

class ConfigSource {
 public:
  static absl::StatusOr<std::unique_ptr<ConfigSource>> Create(const ConfigSourceOptions& options);
  ~ConfigSource();

  // The file to load now ("" for defaults).
  absl::StatusOr<std::string> Select();
  // Readable when the node label changed; -1 when there is no label watch.
  int fd() const;
  // Drains fd(); true when the label changed.
  bool Changed();
  void Stop();

 private:
  explicit ConfigSource(ConfigSourceOptions options) : options_(std::move(options)) {}
  ConfigSourceOptions options_;
  std::unique_ptr<k8s::NodeLabelWatcher> watcher_;
};

}  // namespace slicer::cli

#endif  // SLICER_CLI_CONFIG_SOURCE_H_
