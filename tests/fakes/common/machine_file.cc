#include "machine_file.h"

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace fake {
namespace {

// Indexed by NVML_COMPUTEMODE_* (this file does not include nvml.h).
constexpr const char* kComputeModeNames[] = {"DEFAULT", "EXCLUSIVE_THREAD", "PROHIBITED",
                                             "EXCLUSIVE_PROCESS"};

std::string Trim(std::string s) {
  size_t b = s.find_first_not_of(" \t\r");
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of(" \t\r");
  s = s.substr(b, e - b + 1);
  if (s.size() >= 2 && (s.front() == '"' || s.front() == '\'') && s.back() == s.front()) {
    s = s.substr(1, s.size() - 2);
  }
  return s;
}

bool SetDeviceKey(FakeDevice& d, const std::string& key, const std::string& value,
                  std::string& error) {
  try {
    if (key == "uuid") d.uuid = value;
    else if (key == "name") d.name = value;
    else if (key == "memoryMiB") d.memory_mib = std::stoull(value);
    else if (key == "numaNode") d.numa_node = std::stoi(value);
    else if (key == "computeCapability") {
      size_t dot = value.find('.');
      d.cc_major = std::stoi(value.substr(0, dot));
      d.cc_minor = dot == std::string::npos ? 0 : std::stoi(value.substr(dot + 1));
    } else if (key == "pciBusId") d.pci_bus_id = value;
    else if (key == "minorNumber") d.minor_number = std::stoi(value);
    else if (key == "xidEvents") {
      if (value == "true") d.xid_events = true;
      else if (value == "false") d.xid_events = false;
      else throw std::invalid_argument(value);
    }
    else if (key == "computeMode") {
      if (!ParseComputeMode(value, d.compute_mode)) throw std::invalid_argument(value);
    }
    else {
      error = "unknown device key \"" + key + "\"";
      return false;
    }
  } catch (const std::exception&) {
    error = "bad value \"" + value + "\" for device key \"" + key + "\"";
    return false;
  }
  return true;
}

// Parses "k: v, k: v" (the inside of a flow map).
bool ParseFlowMap(const std::string& body, FakeDevice& d, std::string& error) {
  std::stringstream ss(body);
  std::string item;
  while (std::getline(ss, item, ',')) {
    size_t colon = item.find(':');
    if (colon == std::string::npos) {
      if (Trim(item).empty()) continue;
      error = "expected key: value in \"" + item + "\"";
      return false;
    }
    if (!SetDeviceKey(d, Trim(item.substr(0, colon)), Trim(item.substr(colon + 1)), error)) {
      return false;
    }
  }
  return true;
}

}  // namespace

bool LoadMachine(const std::string& path, Machine& machine, std::string& error) {
  std::ifstream in(path);
  if (!in) {
    error = "cannot read fake machine file " + path;
    return false;
  }
  machine = Machine{};
  std::string line;
  bool in_devices = false;
  int lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    size_t hash = line.find('#');
    if (hash != std::string::npos) line = line.substr(0, hash);
    std::string t = Trim(line);
    if (t.empty()) continue;
    std::string why;
    if (t.rfind("- ", 0) == 0 && in_devices) {
      std::string rest = Trim(t.substr(2));
      machine.devices.emplace_back();
      if (!rest.empty() && rest.front() == '{') {
        if (rest.back() != '}') why = "unterminated {";
        else ParseFlowMap(rest.substr(1, rest.size() - 2), machine.devices.back(), why);
      } else if (!rest.empty()) {
        ParseFlowMap(rest, machine.devices.back(), why);
      }
    } else if (line.find_first_not_of(" \t") > 0 && in_devices && !machine.devices.empty()) {
      ParseFlowMap(t, machine.devices.back(), why);
    } else {
      size_t colon = t.find(':');
      if (colon == std::string::npos) {
        why = "expected key: value";
      } else {
        std::string key = Trim(t.substr(0, colon)), value = Trim(t.substr(colon + 1));
        in_devices = key == "devices";
        if (key == "driverVersion") machine.driver_version = value;
        else if (key == "cudaDriverVersion") machine.cuda_driver_version = std::atoi(value.c_str());
        else if (key != "devices") why = "unknown key \"" + key + "\"";
        else if (!value.empty() && value != "[]") why = "devices must be a list";
      }
    }
    if (!why.empty()) {
      error = path + ":" + std::to_string(lineno) + ": " + why;
      return false;
    }
  }
  for (size_t i = 0; i < machine.devices.size(); ++i) {
    FakeDevice& d = machine.devices[i];
    if (d.uuid.empty()) {
      error = path + ": device " + std::to_string(i) + " has no uuid";
      return false;
    }
    if (d.pci_bus_id.empty()) {
      char buf[32];
      std::snprintf(buf, sizeof buf, "00000000:%02zX:00.0", i + 0x10);
      d.pci_bus_id = buf;
    }
    if (d.minor_number < 0) d.minor_number = static_cast<int>(i);
  }
  return true;
}

const char* ComputeModeName(int mode) {
  constexpr int kCount = sizeof kComputeModeNames / sizeof kComputeModeNames[0];
  return mode >= 0 && mode < kCount ? kComputeModeNames[mode] : nullptr;
}

bool ParseComputeMode(const std::string& name, int& mode) {
  for (int i = 0; ComputeModeName(i) != nullptr; ++i) {
    if (name == ComputeModeName(i)) {
      mode = i;
      return true;
    }
  }
  return false;
}

bool LoadMachineFromEnv(Machine& machine, std::string& error) {
  const char* path = std::getenv("SLICER_FAKE_NVML");
  if (path == nullptr || *path == '\0') {
    error = "SLICER_FAKE_NVML is not set: it must name the fake machine file";
    return false;
  }
  return LoadMachine(path, machine, error);
}

}  // namespace fake
