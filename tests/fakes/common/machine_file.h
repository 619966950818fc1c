// The simulated machine that the fake driver libraries present, read from the YAML file named by
// SLICER_FAKE_NVML (DESIGN.md, "Test doubles"):
//
//   driverVersion: "580.159.04"
//   cudaDriverVersion: 13000          # optional, default 13000
//   devices:
//     - {uuid: GPU-1111..., name: Tesla T4, memoryMiB: 15360, numaNode: 0}
//
// Device keys: uuid (required), name, memoryMiB, numaNode (absent: NVML cannot tell, as on
// drivers without nvmlDeviceGetNumaNodeId), computeCapability ("7.5"), pciBusId
// ("00000000:3B:00.0"), minorNumber (default: the device's index), xidEvents (true/false,
// default true: false models a GPU that does not support event registration), computeMode (the
// mode the GPU boots in: DEFAULT, EXCLUSIVE_THREAD, PROHIBITED or EXCLUSIVE_PROCESS, nvidia-smi's
// names; default DEFAULT).
//
// Only this small subset of YAML is read (flow maps per device, or the same keys as a block
// under "- "), so the fakes need no YAML library. Nothing here uses src/.
#ifndef SLICER_TESTS_FAKES_COMMON_MACHINE_FILE_H_
#define SLICER_TESTS_FAKES_COMMON_MACHINE_FILE_H_

#include <cstdint>
#include <string>
#include <vector>

namespace fake {

struct FakeDevice {
  std::string uuid;
  std::string name = "Tesla T4";
  uint64_t memory_mib = 15360;
  int numa_node = -1;
  int cc_major = 7;
  int cc_minor = 5;
  std::string pci_bus_id;  // generated from the index when absent
  int minor_number = -1;   // set to the index when absent
  bool xid_events = true;  // whether nvmlDeviceRegisterEvents accepts XID events
  int compute_mode = 0;    // NVML_COMPUTEMODE_* (0..3) before anyone sets it
};

struct Machine {
  std::string driver_version = "580.159.04";
  int cuda_driver_version = 13000;
  std::vector<FakeDevice> devices;
};

// Reads the file; on any problem returns false and puts a one-line reason in `error`.
bool LoadMachine(const std::string& path, Machine& machine, std::string& error);

// LoadMachine(getenv("SLICER_FAKE_NVML")), with the error when the variable is unset.
bool LoadMachineFromEnv(Machine& machine, std::string& error);

// nvidia-smi's name of NVML compute mode `mode` (0..3), nullptr for any other value.
const char* ComputeModeName(int mode);

// The mode that ComputeModeName(mode) names; false for any other text.
bool ParseComputeMode(const std::string& name, int& mode);

}  // namespace fake

#endif  // SLICER_TESTS_FAKES_COMMON_MACHINE_FILE_H_
