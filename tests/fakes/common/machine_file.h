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
// default true: false models a GPU that does not support event registration).
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

}  // namespace fake

#endif  // SLICER_TESTS_FAKES_COMMON_MACHINE_FILE_H_
