#include "src/cli/config_source.h"

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "src/common/log.h"

namespace slicer::cli {
namespace {

// Regular files (or links to them) in `dir`, skipping the hidden entries a mounted ConfigMap
// carries (..data, ..2026_11_24...).
std::vector<std::string> ListConfigNames(const std::string& dir) {
  std::vector<std::string> names;
  DIR* d = opendir(dir.c_str());
  if (!d) return names;
  while (dirent* e = readdir(d)) {
    std::string n = e->d_name;
    if (n.empty() || n[0] == '.') continue;
    struct stat st;
    if (stat((dir + "/" + n).c_str(), &st) == 0 && S_ISREG(st.st_mode)) names.push_back(n);
  }
  closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace

absl::StatusOr<std::string> SelectConfigFile(const std::string& dir,
                                             const std::vector<std::string>& names,
                                             const std::optional<std::string>& label,
                                             const std::string& default_config,
                                             const std::string& fallback_strategies) {
  auto has = [&](const std::string& n) {
    return std::find(names.begin(), names.end(), n) != names.end();
  };
  if (label && !label->empty()) {
    if (has(*label)) return dir + "/" + *label;
    return absl::NotFoundError(
        absl::StrCat("the node label names config \"", *label, "\", which is not in ", dir,
                     " (it has: ", names.empty() ? "nothing" : absl::StrJoin(names, ", "), ")"));
  }
  std::stringstream ss(fallback_strategies);
  std::string strategy;
  std::vector<std::string> tried;
  while (std::getline(ss, strategy, ',')) {
    if (strategy == "named") {
      if (!default_config.empty() && has(default_config)) return dir + "/" + default_config;
      tried.push_back(default_config.empty() ? "named (no --default-config)"
                                             : "named (\"" + default_config + "\" not found)");
    } else if (strategy == "single") {
      if (names.size() == 1) return dir + "/" + names[0];
      tried.push_back(absl::StrCat("single (", names.size(), " files)"));
    } else if (strategy == "empty") {
      return std::string();
    } else if (!strategy.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown fallback strategy \"", strategy, "\" (use named, single, empty)"));
    }
  }
  return absl::NotFoundError(absl::StrCat("the node has no config label and no fallback applies: ",
                                          absl::StrJoin(tried, "; ")));
}

absl::StatusOr<std::unique_ptr<ConfigSource>> ConfigSource::Create(
    const ConfigSourceOptions& options) {
  if (!options.config_file.empty() && !options.config_dir.empty()) {
    return absl::InvalidArgumentError("--config-file and --config-dir exclude each other");
  }
  std::unique_ptr<ConfigSource> source(new ConfigSource(options));
  if (!options.config_dir.empty() && !options.node_name.empty()) {
    auto server = k8s::InClusterApiServer(options.api_server);
    if (!server.ok()) return server.status();
    source->watcher_ =
        std::make_unique<k8s::NodeLabelWatcher>(*server, options.node_name, options.node_label);
    absl::Status s = source->watcher_->Start();
    if (!s.ok()) {
      // Keep going on the fallbacks; the watcher keeps trying and a label will trigger a reload.
      SLOG(kWarning, "node_read_failed")
          .Kv("node", options.node_name)
          .Kv("error", std::string(s.message()));
    }
  }
  return source;
}

ConfigSource::~ConfigSource() { Stop(); }

absl::StatusOr<std::string> ConfigSource::Select() {
  if (!options_.config_file.empty()) return options_.config_file;
  if (options_.config_dir.empty()) return std::string();
  std::optional<std::string> label;
  if (watcher_) label = watcher_->Value();
  return SelectConfigFile(options_.config_dir, ListConfigNames(options_.config_dir), label,
                          options_.default_config, options_.fallback_strategies);
}

int ConfigSource::fd() const { return watcher_ ? watcher_->fd() : -1; }

bool ConfigSource::Changed() { return watcher_ && watcher_->TakeChange(); }

void ConfigSource::Stop() {
  if (watcher_) watcher_->Stop();
}

}  // namespace slicer::cli
