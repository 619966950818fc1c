#include "src/arbiter/config.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "src/common/units.h"
#include "yaml-cpp/yaml.h"

namespace slicer::arbiter {
namespace {

std::string Where(const std::string& name, const YAML::Node& n) {
  return absl::StrCat(name, ":", n.Mark().line + 1);
}

absl::StatusOr<Clock::Duration> Dur(const std::string& name, const std::string& key,
                                    const YAML::Node& n) {
  if (!n.IsScalar()) {
    return absl::InvalidArgumentError(
        absl::StrCat(Where(name, n), ": ", key, " must be a duration"));
  }
  auto d = ParseDuration(n.Scalar());
  if (!d.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(Where(name, n), ": ", key, ": ", std::string(d.status().message())));
  }
  return *d;
}

absl::StatusOr<double> Num(const std::string& name, const std::string& key, const YAML::Node& n) {
  if (n.IsScalar()) {
    try {
      return n.as<double>();
    } catch (const YAML::Exception&) {
    }
  }
  return absl::InvalidArgumentError(absl::StrCat(Where(name, n), ": ", key, " must be a number"));
}

absl::StatusOr<bool> Bool(const std::string& name, const std::string& key, const YAML::Node& n) {
  auto b = n.IsScalar() ? ParseBool(n.Scalar()) : absl::InvalidArgumentError("");
  if (!b.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(Where(name, n), ": ", key, " must be true or false"));
  }
  return *b;
}

absl::StatusOr<ArbiterConfig> ParseNode(const YAML::Node& root, const std::string& name,
                                        ArbiterConfig c) {
  YAML::Node sec = root;
  if (root.IsMap() && root["arbiter"]) {
    if (root.size() != 1) {
      for (const auto& kv : root) {
        std::string k = kv.first.as<std::string>();
        if (k != "arbiter") {
          return absl::InvalidArgumentError(
              absl::StrCat(Where(name, kv.first), ": unknown key \"", k, "\" (only arbiter:)"));
        }
      }
    }
    sec = root["arbiter"];
  }
  if (sec.IsNull()) return c;
  if (!sec.IsMap()) {
    return absl::InvalidArgumentError(absl::StrCat(Where(name, sec), ": expected a mapping"));
  }
  for (const auto& kv : sec) {
    std::string key = kv.first.as<std::string>();
    const YAML::Node& v = kv.second;
    if (key == "policy") {
      auto p = ParsePolicy(v.IsScalar() ? v.Scalar() : "");
      if (!p.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat(Where(name, v), ": policy: ", std::string(p.status().message())));
      }
      c.scheduler.policy = *p;
    } else if (key == "handover") {
      auto h = ParseHandover(v.IsScalar() ? v.Scalar() : "");
      if (!h.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat(Where(name, v), ": handover: ", std::string(h.status().message())));
      }
      c.scheduler.handover = *h;
    } else if (key == "gating") {
      auto g = ParseGating(v.IsScalar() ? v.Scalar() : "");
      if (!g.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat(Where(name, v), ": gating: ", std::string(g.status().message())));
      }
      c.scheduler.gating = *g;
    } else if (key == "quantum") {
      auto d = Dur(name, key, v);
      if (!d.ok()) return d.status();
      c.scheduler.quantum = *d;
    } else if (key == "batchQuantum") {
      auto d = Dur(name, key, v);
      if (!d.ok()) return d.status();
      c.scheduler.batch_quantum = *d;
    } else if (key == "maxQuantum") {
      auto d = Dur(name, key, v);
      if (!d.ok()) return d.status();
      c.scheduler.max_quantum = *d;
    } else if (key == "revokeGrace") {
      auto d = Dur(name, key, v);
      if (!d.ok()) return d.status();
      c.scheduler.revoke_grace = *d;
    } else if (key == "maxQueued") {
      auto d = Dur(name, key, v);
      if (!d.ok()) return d.status();
      c.max_queued = *d;
    } else if (key == "priorityFloor") {
      auto d = Num(name, key, v);
      if (!d.ok()) return d.status();
      c.scheduler.priority_floor = *d;
    } else if (key == "failClosed") {
      auto b = Bool(name, key, v);
      if (!b.ok()) return b.status();
      c.fail_closed = *b;
    } else if (key == "trustClaims") {
      if (v.IsScalar() && v.Scalar() == "auto") {
        c.trust_claims.reset();
      } else {
        auto b = Bool(name, key, v);
        if (!b.ok()) return b.status();
        c.trust_claims = *b;
      }
    } else if (key == "weightOverride") {
      if (!v.IsMap()) {
        return absl::InvalidArgumentError(
            absl::StrCat(Where(name, v), ": weightOverride must be a mapping {min, max}"));
      }
      for (const auto& w : v) {
        std::string wk = w.first.as<std::string>();
        auto d = Num(name, "weightOverride." + wk, w.second);
        if (!d.ok()) return d.status();
        if (wk == "min") {
          c.min_weight = *d;
        } else if (wk == "max") {
          c.max_weight = *d;
        } else {
          return absl::InvalidArgumentError(absl::StrCat(
              Where(name, w.first), ": unknown key \"weightOverride.", wk, "\" (min, max)"));
        }
      }
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat(Where(name, kv.first), ": unknown key \"", key,
                       "\" (policy, quantum, batchQuantum, maxQuantum, priorityFloor, "
                       "weightOverride, failClosed, revokeGrace, maxQueued, handover, "
                       "gating, trustClaims)"));
    }
  }
  absl::Status s = ValidateArbiterConfig(c);
  if (!s.ok()) return absl::InvalidArgumentError(absl::StrCat(name, ": ", s.message()));
  return c;
}

}  // namespace

absl::Status ValidateArbiterConfig(const ArbiterConfig& c) {
  using std::chrono::milliseconds;
  if (c.scheduler.quantum < milliseconds(1) || c.scheduler.quantum > std::chrono::seconds(10)) {
    return absl::InvalidArgumentError("quantum must be between 1ms and 10s");
  }
  if (c.scheduler.batch_quantum < Clock::Duration(0) ||
      c.scheduler.batch_quantum > std::chrono::seconds(10)) {
    return absl::InvalidArgumentError(
        "batchQuantum must be between 0 and 10s (at most quantum: no batch leases)");
  }
  if (c.scheduler.max_quantum < c.scheduler.quantum) {
    return absl::InvalidArgumentError("maxQuantum must be at least quantum");
  }
  if (!(c.scheduler.priority_floor >= 0 && c.scheduler.priority_floor <= 0.5)) {
    return absl::InvalidArgumentError("priorityFloor must be between 0 and 0.5");
  }
  if (!(c.min_weight > 0 && c.min_weight <= c.max_weight && c.max_weight <= 1000)) {
    return absl::InvalidArgumentError("weightOverride needs 0 < min <= max <= 1000");
  }
  if (c.scheduler.revoke_grace < milliseconds(1)) {
    return absl::InvalidArgumentError("revokeGrace must be at least 1ms");
  }
  if (c.max_queued && *c.max_queued < Clock::Duration(0)) {
    return absl::InvalidArgumentError("maxQueued must not be negative");
  }
  return absl::OkStatus();
}

Clock::Duration MaxQueued(const ArbiterConfig& c) {
  if (c.max_queued) return *c.max_queued;
  return c.scheduler.policy == Policy::kPriority ? std::chrono::milliseconds(2)
                                                 : std::chrono::milliseconds(10);
}

SchedulerConfig SchedulerFor(const ArbiterConfig& c) {
  SchedulerConfig s = c.scheduler;
  Clock::Duration mq = MaxQueued(c);
  s.queue_leased = mq;
  s.queue_alone = s.policy == Policy::kPriority ? mq : std::max(mq, Clock::Duration(std::chrono::milliseconds(50)));
  s.queue_shared = std::max(mq, Clock::Duration(std::chrono::milliseconds(100)));
  return s;
}

absl::StatusOr<ArbiterConfig> ParseArbiterConfig(const std::string& text, const std::string& name,
                                                 ArbiterConfig base) {
  try {
    return ParseNode(YAML::Load(text), name, base);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(name, ":", e.mark.line + 1, ": ", e.msg));
  }
}

absl::StatusOr<ArbiterConfig> LoadArbiterConfig(const std::string& path, ArbiterConfig base) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return ParseArbiterConfig(ss.str(), path, base);
}

}  // namespace slicer::arbiter
