// A small command-line flag parser with NVIDIA-style environment fallbacks: each flag may name an
// environment variable; the value is the flag's if given, else the variable's if set, else the
// default. Accepts --name=value, --name value, and bare --name for booleans.
#ifndef SLICER_CLI_FLAGS_H_
#define SLICER_CLI_FLAGS_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace slicer::cli {

class FlagSet {
 public:
  explicit FlagSet(std::string usage_line) : usage_line_(std::move(usage_line)) {}

  void Add(std::string name, std::string env, std::string default_value, std::string help,
           bool is_bool = false);
  // Parses argv[1..]; arguments after "--" and non-flag arguments go to positional().
  // Errors: an unknown flag, a missing value. "--help"/"-h" sets help_requested().
  absl::Status Parse(int argc, char** argv);

  std::optional<std::string> FromFlag(const std::string& name) const;
  std::optional<std::string> FromEnv(const std::string& name) const;
  // Flag, else environment, else default.
  std::string Get(const std::string& name) const;
  const std::vector<std::string>& positional() const { return positional_; }
  bool help_requested() const { return help_requested_; }
  std::string Usage() const;
  bool Has(const std::string& name) const { return Find(name) != nullptr; }

 private:
  struct Flag {
    std::string name, env, default_value, help;
    bool is_bool = false;
    std::optional<std::string> value;
  };
  const Flag* Find(const std::string& name) const;

  std::string usage_line_;
  std::vector<Flag> flags_;
  std::vector<std::string> positional_;
  bool help_requested_ = false;
};

// The start of a subcommand: parses argv. On a bad flag prints "<command>: <error>" to stderr and
// returns 2; on --help prints the usage to stdout and returns 0. When the set defines
// "log-level", applies it (an unknown level is a bad flag). Returns -1 to go on.
int ParseCommandLine(FlagSet& flags, int argc, char** argv, const char* command);

}  // namespace slicer::cli

#endif  // SLICER_CLI_FLAGS_H_
