#include "src/cli/flags.h"

#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "src/common/log.h"

namespace slicer::cli {

void FlagSet::Add(std::string name, std::string env, std::string default_value, std::string help,
                  bool is_bool) {
  flags_.push_back({std::move(name), std::move(env), std::move(default_value), std::move(help),
                    is_bool, std::nullopt});
}

const FlagSet::Flag* FlagSet::Find(const std::string& name) const {
  for (const Flag& f : flags_) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

absl::Status FlagSet::Parse(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--") {
      for (++i; i < argc; ++i) positional_.push_back(argv[i]);
      break;
    }
    if (arg == "--help" || arg == "-h") {
      help_requested_ = true;
      continue;
    }
    if (arg.rfind("--", 0) != 0 || arg.size() == 2) {
      positional_.push_back(arg);
      continue;
    }
    std::string name = arg.substr(2), value;
    bool has_value = false;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_value = true;
    }
    Flag* flag = const_cast<Flag*>(Find(name));
    if (flag == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name, " (see --help)"));
    }
    if (!has_value) {
      if (flag->is_bool) {
        // A bare boolean flag means true; "--flag false" is also accepted.
        if (i + 1 < argc &&
            (std::string(argv[i + 1]) == "true" || std::string(argv[i + 1]) == "false")) {
          value = argv[++i];
        } else {
          value = "true";
        }
      } else if (i + 1 < argc) {
        value = argv[++i];
      } else {
        return absl::InvalidArgumentError(absl::StrCat("flag --", name, " needs a value"));
      }
    }
    flag->value = value;
  }
  return absl::OkStatus();
}

std::optional<std::string> FlagSet::FromFlag(const std::string& name) const {
  const Flag* f = Find(name);
  return f ? f->value : std::nullopt;
}

std::optional<std::string> FlagSet::FromEnv(const std::string& name) const {
  const Flag* f = Find(name);
  if (f == nullptr || f->env.empty()) return std::nullopt;
  const char* v = std::getenv(f->env.c_str());
  if (v == nullptr) return std::nullopt;
  return std::string(v);
}

std::string FlagSet::Get(const std::string& name) const {
  if (auto v = FromFlag(name)) return *v;
  if (auto v = FromEnv(name)) return *v;
  const Flag* f = Find(name);
  return f ? f->default_value : "";
}

std::string FlagSet::Usage() const {
  std::string out = absl::StrCat("usage: ", usage_line_, "\n\nflags:\n");
  for (const Flag& f : flags_) {
    absl::StrAppend(&out, "  --", f.name, f.is_bool ? "" : " VALUE", "\n      ", f.help);
    if (!f.default_value.empty()) absl::StrAppend(&out, " (default \"", f.default_value, "\")");
    if (!f.env.empty()) absl::StrAppend(&out, " [$", f.env, "]");
    out += "\n";
  }
  return out;
}

int ParseCommandLine(FlagSet& flags, int argc, char** argv, const char* command) {
  if (absl::Status s = flags.Parse(argc, argv); !s.ok()) {
    std::fprintf(stderr, "%s: %s\n", command, std::string(s.message()).c_str());
    return 2;
  }
  if (flags.help_requested()) {
    std::fputs(flags.Usage().c_str(), stdout);
    return 0;
  }
  if (flags.Has("log-level")) {
    std::string name = flags.Get("log-level");
    std::optional<LogLevel> level = ParseLogLevel(name);
    if (!level) {
      std::fprintf(stderr, "%s: --log-level (SLICER_LOG_LEVEL) wants debug, info, warning or error, got \"%s\"\n",
                   command, name.c_str());
      return 2;
    }
    SetLogLevel(*level);
  }
  return -1;
}

}  // namespace slicer::cli
