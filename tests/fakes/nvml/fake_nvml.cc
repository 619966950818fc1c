// Fake libnvidia-ml.so.1: the subset of NVML that src/nvml uses, over a simulated machine, so that
// discovery and health checking can be tested without a GPU (DESIGN.md, "Test doubles").
//
// Contract:
// - nvmlInit_v2 reads the machine from the file named by SLICER_FAKE_NVML
//   (tests/fakes/common/machine_file.h). If the variable is unset or the file is missing or
//   malformed it prints the reason on stderr and returns NVML_ERROR_DRIVER_NOT_LOADED (what a
//   node without a working driver answers). Init/shutdown are reference counted as in NVML; the
//   machine is re-read on each 0 -> 1 transition. Every other call returns
//   NVML_ERROR_UNINITIALIZED before a successful nvmlInit_v2.
// - Events come from the file named by SLICER_FAKE_NVML_EVENTS (optional; it may appear later),
//   one per line:
//     xid <uuid> <code>   a fault: an XID event (eventData = code) for every event set that
//                         registered that GPU for nvmlEventTypeXidCriticalError; from then on
//                         the GPU is "lost": nvmlDeviceGetHandleByIndex_v2,
//                         nvmlDeviceGetHandleByUUID and nvmlDeviceGetMemoryInfo(_v2) return
//                         NVML_ERROR_GPU_IS_LOST. Static queries on a handle obtained earlier
//                         (name, UUID, PCI info, ...) keep answering.
//     recover <uuid>      the GPU answers again.
//   Unknown lines and unknown UUIDs are ignored with a message on stderr. Lines already in the
//   file at nvmlInit_v2 set the starting state (lost or not) but are not delivered as events;
//   lines appended later are. The file is read incrementally (every call that depends on the
//   GPU's state catches up first), only complete lines are consumed, and a file that shrinks is
//   read again from the start.
// - nvmlEventSetWait_v2 polls the file every few milliseconds until an event is queued for the
//   set or `timeoutms` has passed (then NVML_ERROR_TIMEOUT).
// - A device with `xidEvents: false` answers nvmlDeviceRegisterEvents with
//   NVML_ERROR_NOT_SUPPORTED; a device without `numaNode` answers nvmlDeviceGetNumaNodeId with
//   NVML_ERROR_NOT_SUPPORTED.
// - Compute modes persist in a file, so that every process on the simulated node sees what one of
//   them set (on a real node the mode lives in the driver): the file named by
//   SLICER_FAKE_NVML_COMPUTE_MODE, or "<SLICER_FAKE_NVML>.compute-mode" when that is unset (both
//   read at nvmlInit_v2). One line per GPU that has been set, "<uuid> <MODE>" with MODE one of
//   DEFAULT, EXCLUSIVE_THREAD, PROHIBITED, EXCLUSIVE_PROCESS (nvidia-smi's names). A missing
//   file or a GPU without a line has the machine file's `computeMode` (DEFAULT when absent);
//   lines that cannot be read are skipped with a message on stderr (and kept by a later Set).
//   nvmlDeviceGetComputeMode reads the file on every call. nvmlDeviceSetComputeMode replaces or
//   appends the GPU's line, writing a temporary file beside it and renaming it over the file
//   (readers never see half a file), under flock(2) on "<file>.lock" (concurrent setters in
//   other processes do not lose each other's lines); a file that cannot be written is a message
//   on stderr and NVML_ERROR_UNKNOWN. On a lost GPU both return NVML_ERROR_GPU_IS_LOST. Set
//   checks, in this order: a mode outside 0..3 (NVML_ERROR_INVALID_ARGUMENT), a lost GPU,
//   SLICER_FAKE_NVML_NO_PERMISSION=1 at nvmlInit_v2 (NVML_ERROR_NO_PERMISSION: a process that is
//   not root), EXCLUSIVE_THREAD (NVML_ERROR_NOT_SUPPORTED, as on every driver since CUDA 4.0).
// - Built with FAKE_NVML_OMIT_DEVICE_GET_UUID, nvmlDeviceGetUUID is not exported (the "broken"
//   variant that tests a missing symbol); built with FAKE_NVML_OMIT_COMPUTE_MODE, neither
//   compute-mode call is (an old driver, for the loader's optional symbols).
//
// Thread-safe: one mutex guards all state; nvmlEventSetWait_v2 sleeps without holding it.
#define NVML_NO_UNVERSIONED_FUNC_DEFS
#include <fcntl.h>
#include <nvml.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "machine_file.h"

#define FAKE_EXPORT extern "C" __attribute__((visibility("default")))

// Handles point into this table; they stay valid for the life of the process, like NVML's.
struct nvmlDevice_st {
  unsigned int index;
};

struct nvmlEventSet_st {
  std::set<unsigned int> xid_devices;  // indexes registered for XID events
  struct Event {
    unsigned int index;
    unsigned long long xid;
  };
  std::deque<Event> queue;
};

namespace {

constexpr unsigned int kMaxDevices = 64;

struct State {
  std::mutex mu;
  int init_count = 0;
  fake::Machine machine;
  std::vector<bool> lost;
  std::string events_path;
  std::streamoff events_offset = 0;
  std::set<nvmlEventSet_st*> sets;
  std::string compute_mode_path;
  bool no_permission = false;  // SLICER_FAKE_NVML_NO_PERMISSION=1: not root
  nvmlDevice_st handles[kMaxDevices];
};

// Created on first use and never destroyed while the library is loaded (threads may call in
// until exit). Freed when the library is unloaded after its last nvmlShutdown (the plugin
// dlcloses NVML as it stops): unloaded, nothing points at it, and LeakSanitizer would say so.
State* g_state = nullptr;

State& S() {
  static State* s = [] {
    auto* st = new State;
    for (unsigned int i = 0; i < kMaxDevices; ++i) st->handles[i].index = i;
    g_state = st;
    return st;
  }();
  return *s;
}

__attribute__((destructor)) void FreeStateOnUnload() {
  if (g_state != nullptr && g_state->init_count <= 0) delete g_state;
}

int FindUuid(const State& s, const std::string& uuid) {
  for (size_t i = 0; i < s.machine.devices.size(); ++i) {
    if (s.machine.devices[i].uuid == uuid) return static_cast<int>(i);
  }
  return -1;
}

void ApplyLine(State& s, const std::string& line, bool deliver) {
  std::istringstream in(line);
  std::string verb, uuid;
  in >> verb;
  if (verb.empty()) return;
  if (verb == "xid") {
    unsigned long long code = 0;
    if (!(in >> uuid >> code)) {
      std::fprintf(stderr, "fake-nvml: ignoring malformed event line \"%s\"\n", line.c_str());
      return;
    }
    int i = FindUuid(s, uuid);
    if (i < 0) {
      std::fprintf(stderr, "fake-nvml: ignoring event for unknown GPU %s\n", uuid.c_str());
      return;
    }
    s.lost[i] = true;
    if (!deliver) return;
    for (nvmlEventSet_st* set : s.sets) {
      if (set->xid_devices.count(i)) set->queue.push_back({static_cast<unsigned int>(i), code});
    }
  } else if (verb == "recover") {
    if (!(in >> uuid)) {
      std::fprintf(stderr, "fake-nvml: ignoring malformed event line \"%s\"\n", line.c_str());
      return;
    }
    int i = FindUuid(s, uuid);
    if (i < 0) {
      std::fprintf(stderr, "fake-nvml: ignoring event for unknown GPU %s\n", uuid.c_str());
      return;
    }
    s.lost[i] = false;
  } else {
    std::fprintf(stderr, "fake-nvml: ignoring unknown event line \"%s\"\n", line.c_str());
  }
}

// Consumes the complete lines appended to the events file since the last call. Caller holds mu.
void CatchUp(State& s, bool deliver) {
  if (s.events_path.empty()) return;
  struct stat st;
  if (stat(s.events_path.c_str(), &st) != 0) return;      // not there yet
  if (st.st_size < s.events_offset) s.events_offset = 0;  // truncated or replaced
  if (st.st_size == s.events_offset) return;
  std::ifstream in(s.events_path, std::ios::binary);
  if (!in) return;
  in.seekg(s.events_offset);
  std::string chunk((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t start = 0;
  for (size_t nl; (nl = chunk.find('\n', start)) != std::string::npos; start = nl + 1) {
    ApplyLine(s, chunk.substr(start, nl - start), deliver);
  }
  s.events_offset += static_cast<std::streamoff>(start);
}

#ifndef FAKE_NVML_OMIT_COMPUTE_MODE
// The compute-mode file's lines, or none when it does not exist.
std::vector<std::string> ReadLines(const std::string& path) {
  std::vector<std::string> lines;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// The mode the compute-mode file gives `uuid`, or `initial` where it gives none.
int ComputeModeOf(const State& s, const std::string& uuid, int initial) {
  int mode = initial;
  for (const std::string& line : ReadLines(s.compute_mode_path)) {
    std::istringstream in(line);
    std::string id, name, extra;
    if (!(in >> id)) continue;  // blank
    int m = 0;
    if (!(in >> name) || (in >> extra) || !fake::ParseComputeMode(name, m)) {
      std::fprintf(stderr, "fake-nvml: %s: ignoring line \"%s\" (want \"<uuid> <MODE>\")\n",
                   s.compute_mode_path.c_str(), line.c_str());
      continue;
    }
    if (id == uuid) mode = m;
  }
  return mode;
}

// Replaces (or adds) the line of `uuid` in the compute-mode file. False with a message on error.
bool WriteComputeMode(const State& s, const std::string& uuid, int mode) {
  const std::string& path = s.compute_mode_path;
  int lock = open((path + ".lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lock < 0 || flock(lock, LOCK_EX) != 0) {
    std::fprintf(stderr, "fake-nvml: cannot lock %s.lock: %s\n", path.c_str(),
                 std::strerror(errno));
    if (lock >= 0) close(lock);
    return false;
  }
  std::string content;
  for (const std::string& line : ReadLines(path)) {
    std::istringstream in(line);
    std::string id;
    if (in >> id && id == uuid) continue;
    content += line + "\n";
  }
  content += uuid + " " + fake::ComputeModeName(mode) + "\n";
  const std::string tmp = path + ".tmp." + std::to_string(getpid());
  bool ok = false;
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << content;
    out.close();
    ok = static_cast<bool>(out) && std::rename(tmp.c_str(), path.c_str()) == 0;
  }
  if (!ok) {
    std::fprintf(stderr, "fake-nvml: cannot write %s: %s\n", path.c_str(), std::strerror(errno));
    std::remove(tmp.c_str());
  }
  close(lock);
  return ok;
}
#endif  // FAKE_NVML_OMIT_COMPUTE_MODE

bool ValidHandle(const State& s, nvmlDevice_t device) {
  if (device == nullptr) return false;
  return device >= s.handles && device < s.handles + s.machine.devices.size();
}

nvmlReturn_t CopyString(const std::string& value, char* out, unsigned int length) {
  if (out == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
  if (value.size() + 1 > length) return NVML_ERROR_INSUFFICIENT_SIZE;
  std::memcpy(out, value.c_str(), value.size() + 1);
  return NVML_SUCCESS;
}

// Guards for the entry points: lock, check init, (optionally) validate the handle.
#define FAKE_LOCK()                       \
  State& s = S();                         \
  std::lock_guard<std::mutex> lock(s.mu); \
  if (s.init_count == 0) return NVML_ERROR_UNINITIALIZED

#define FAKE_DEVICE(device)                                        \
  FAKE_LOCK();                                                     \
  if (!ValidHandle(s, device)) return NVML_ERROR_INVALID_ARGUMENT; \
  const fake::FakeDevice& d = s.machine.devices[device->index];    \
  (void)d

}  // namespace

FAKE_EXPORT nvmlReturn_t nvmlInit_v2(void) {
  State& s = S();
  std::lock_guard<std::mutex> lock(s.mu);
  if (s.init_count > 0) {
    ++s.init_count;
    return NVML_SUCCESS;
  }
  fake::Machine machine;
  std::string error;
  if (!fake::LoadMachineFromEnv(machine, error)) {
    std::fprintf(stderr, "fake-nvml: nvmlInit: %s\n", error.c_str());
    return NVML_ERROR_DRIVER_NOT_LOADED;
  }
  if (machine.devices.size() > kMaxDevices) {
    std::fprintf(stderr, "fake-nvml: nvmlInit: more than %u devices\n", kMaxDevices);
    return NVML_ERROR_DRIVER_NOT_LOADED;
  }
  s.machine = std::move(machine);
  s.lost.assign(s.machine.devices.size(), false);
  const char* events = std::getenv("SLICER_FAKE_NVML_EVENTS");
  s.events_path = events != nullptr ? events : "";
  s.events_offset = 0;
  const char* modes = std::getenv("SLICER_FAKE_NVML_COMPUTE_MODE");
  s.compute_mode_path = modes != nullptr && *modes != '\0'
                            ? modes
                            : std::string(std::getenv("SLICER_FAKE_NVML")) + ".compute-mode";
  const char* no_permission = std::getenv("SLICER_FAKE_NVML_NO_PERMISSION");
  s.no_permission = no_permission != nullptr && std::strcmp(no_permission, "1") == 0;
  CatchUp(s, /*deliver=*/false);
  s.init_count = 1;
  return NVML_SUCCESS;
}

FAKE_EXPORT nvmlReturn_t nvmlShutdown(void) {
  FAKE_LOCK();
  --s.init_count;
  return NVML_SUCCESS;
}

FAKE_EXPORT const char* nvmlErrorString(nvmlReturn_t result) {
  switch (result) {
    case NVML_SUCCESS:
      return "Success";
    case NVML_ERROR_UNINITIALIZED:
      return "Uninitialized";
    case NVML_ERROR_INVALID_ARGUMENT:
      return "Invalid Argument";
    case NVML_ERROR_NOT_SUPPORTED:
      return "Not Supported";
    case NVML_ERROR_NOT_FOUND:
      return "Not Found";
    case NVML_ERROR_INSUFFICIENT_SIZE:
      return "Insufficient Size";
    case NVML_ERROR_DRIVER_NOT_LOADED:
      return "Driver Not Loaded";
    case NVML_ERROR_TIMEOUT:
      return "Timeout";
    case NVML_ERROR_GPU_IS_LOST:
      return "GPU is lost";
    case NVML_ERROR_NO_PERMISSION:
      return "Insufficient Permissions";
    case NVML_ERROR_ARGUMENT_VERSION_MISMATCH:
      return "Argument version mismatch";
    default:
      return "Unknown Error";
  }
}

FAKE_EXPORT nvmlReturn_t nvmlSystemGetDriverVersion(char* version, unsigned int length) {
  FAKE_LOCK();
  return CopyString(s.machine.driver_version, version, length);
}

FAKE_EXPORT nvmlReturn_t nvmlSystemGetCudaDriverVersion_v2(int* version) {
  FAKE_LOCK();
  if (version == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
  *version = s.machine.cuda_driver_version;
  return NVML_SUCCESS;
}

FAKE_EXPORT nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int* count) {
  FAKE_LOCK();
  if (count == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
  *count = static_cast<unsigned int>(s.machine.devices.size());
  return NVML_SUCCESS;
}

FAKE_EXPORT nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t* device) {
  FAKE_LOCK();
  if (device == nullptr || index >= s.machine.devices.size()) return NVML_ERROR_INVALID_ARGUMENT;
  CatchUp(s, /*deliver=*/true);
  if (s.lost[index]) return NVML_ERROR_GPU_IS_LOST;
  *device = &s.handles[index];
  return NVML_SUCCESS;
}

FAKE_EXPORT nvmlReturn_t nvmlDeviceGetHandleByUUID(const char* uuid, nvmlDevice_t* device) {
  FAKE_LOCK();
  if (uuid == nullptr || device == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
  int i = FindUuid(s, uuid);
  if (i < 0) return NVML_ERROR_NOT_FOUND;
  CatchUp(s, /*deliver=*/true);
  if (s.lost[i]) return NVML_ERROR_GPU_IS_LOST;
  *device = &s.handles[i];
  return NVML_SUCCESS;
}

FAKE_EXPORT nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t device, char* name, unsigned int length) {
  FAKE_DEVICE(device);
  return CopyString(d.name, name, length);
}

#ifndef FAKE_NVML_OMIT_DEVICE_GET_UUID
FAKE_EXPORT nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t device, char* uuid, unsigned int length) {
  FAKE_DEVICE(device);
  return CopyString(d.uuid, uuid, length);
}
#endif

FAKE_EXPORT nvmlReturn_t nvmlDeviceGetIndex(nvmlDevice_t device, unsigned int* index) {
  FAKE_DEVICE(device);
  if (index == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
  *index = device->index;
  return NVML_SUCCESS;
}

FAKE_EXPORT nvmlReturn_t nvmlDeviceGetMinorNumber(nvmlDevice_t device, unsigned int* minor) {
  FAKE_DEVICE(device);
  if (minor == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
  *minor = static_cast<unsigned int>(d.minor_number);
  return NVML_SUCCESS;
}

FAKE_EXPORT nvmlReturn_t nvmlDeviceGetNumaNodeId(nvmlDevice_t device, unsigned int* node) {
  FAKE_DEVICE(device);
  if (node == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
  if (d.numa_node < 0) return NVML_ERROR_NOT_SUPPORTED;
  *node = static_cast<unsigned int>(d.numa_node);
  return NVML_SUCCESS;
}

FAKE_EXPORT nvmlReturn_t nvmlDeviceGetCudaComputeCapability(nvmlDevice_t device, int* major,
                                                            int* minor) {
  FAKE_DEVICE(device);
  if (major == nullptr || minor == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
  *major = d.cc_major;
  *minor = d.cc_minor;
  return NVML_SUCCESS;
}

FAKE_EXPORT nvmlReturn_t nvmlDeviceGetPciInfo_v3(nvmlDevice_t device, nvmlPciInfo_t* pci) {
  FAKE_DEVICE(device);
  if (pci == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
  std::memset(pci, 0, sizeof *pci);
  unsigned int domain = 0, bus = 0, dev = 0, fn = 0;
  std::sscanf(d.pci_bus_id.c_str(), "%x:%x:%x.%x", &domain, &bus, &dev, &fn);
  pci->domain = domain;
  pci->bus = bus;
  pci->device = dev;
  pci->pciDeviceId = 0x1EB810DE;  // Tesla T4
  std::snprintf(pci->busIdLegacy, sizeof pci->busIdLegacy, NVML_DEVICE_PCI_BUS_ID_LEGACY_FMT,
                domain, bus, dev);
  std::snprintf(pci->busId, sizeof pci->busId, "%s", d.pci_bus_id.c_str());
  return NVML_SUCCESS;
}

FAKE_EXPORT nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t device, nvmlMemory_t* memory) {
  FAKE_DEVICE(device);
  if (memory == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
  CatchUp(s, /*deliver=*/true);
  if (s.lost[device->index]) return NVML_ERROR_GPU_IS_LOST;
  memory->total = d.memory_mib << 20;
  memory->free = memory->total;
  memory->used = 0;
  return NVML_SUCCESS;
}

FAKE_EXPORT nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t device, nvmlMemory_v2_t* memory) {
  FAKE_DEVICE(device);
  if (memory == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
  if (memory->version != nvmlMemory_v2) return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
  CatchUp(s, /*deliver=*/true);
  if (s.lost[device->index]) return NVML_ERROR_GPU_IS_LOST;
  memory->total = d.memory_mib << 20;
  memory->reserved = 0;
  memory->free = memory->total;
  memory->used = 0;
  return NVML_SUCCESS;
}

#ifndef FAKE_NVML_OMIT_COMPUTE_MODE
FAKE_EXPORT nvmlReturn_t nvmlDeviceGetComputeMode(nvmlDevice_t device, nvmlComputeMode_t* mode) {
  FAKE_DEVICE(device);
  if (mode == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
  CatchUp(s, /*deliver=*/true);
  if (s.lost[device->index]) return NVML_ERROR_GPU_IS_LOST;
  *mode = static_cast<nvmlComputeMode_t>(ComputeModeOf(s, d.uuid, d.compute_mode));
  return NVML_SUCCESS;
}

FAKE_EXPORT nvmlReturn_t nvmlDeviceSetComputeMode(nvmlDevice_t device, nvmlComputeMode_t mode) {
  FAKE_DEVICE(device);
  if (fake::ComputeModeName(mode) == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
  CatchUp(s, /*deliver=*/true);
  if (s.lost[device->index]) return NVML_ERROR_GPU_IS_LOST;
  if (s.no_permission) return NVML_ERROR_NO_PERMISSION;
  if (mode == NVML_COMPUTEMODE_EXCLUSIVE_THREAD) return NVML_ERROR_NOT_SUPPORTED;
  return WriteComputeMode(s, d.uuid, mode) ? NVML_SUCCESS : NVML_ERROR_UNKNOWN;
}
#endif

FAKE_EXPORT nvmlReturn_t nvmlEventSetCreate(nvmlEventSet_t* set) {
  FAKE_LOCK();
  if (set == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
  CatchUp(s, /*deliver=*/true);  // events before the set existed are not its business
  *set = new nvmlEventSet_st;
  s.sets.insert(*set);
  return NVML_SUCCESS;
}

FAKE_EXPORT nvmlReturn_t nvmlEventSetFree(nvmlEventSet_t set) {
  FAKE_LOCK();
  if (s.sets.erase(set) == 0) return NVML_ERROR_INVALID_ARGUMENT;
  delete set;
  return NVML_SUCCESS;
}

FAKE_EXPORT nvmlReturn_t nvmlDeviceRegisterEvents(nvmlDevice_t device,
                                                  unsigned long long event_types,
                                                  nvmlEventSet_t set) {
  FAKE_DEVICE(device);
  if (s.sets.count(set) == 0) return NVML_ERROR_INVALID_ARGUMENT;
  if (event_types & ~static_cast<unsigned long long>(nvmlEventTypeXidCriticalError)) {
    return NVML_ERROR_NOT_SUPPORTED;  // the fake only knows XIDs
  }
  if (!d.xid_events) return NVML_ERROR_NOT_SUPPORTED;
  CatchUp(s, /*deliver=*/true);
  if (event_types & nvmlEventTypeXidCriticalError) set->xid_devices.insert(device->index);
  return NVML_SUCCESS;
}

FAKE_EXPORT nvmlReturn_t nvmlEventSetWait_v2(nvmlEventSet_t set, nvmlEventData_t* data,
                                             unsigned int timeoutms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeoutms);
  if (data == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
  for (;;) {
    {
      FAKE_LOCK();
      if (s.sets.count(set) == 0) return NVML_ERROR_INVALID_ARGUMENT;
      CatchUp(s, /*deliver=*/true);
      if (!set->queue.empty()) {
        nvmlEventSet_st::Event e = set->queue.front();
        set->queue.pop_front();
        std::memset(data, 0, sizeof *data);
        data->device = &s.handles[e.index];
        data->eventType = nvmlEventTypeXidCriticalError;
        data->eventData = e.xid;
        data->gpuInstanceId = 0xFFFFFFFF;
        data->computeInstanceId = 0xFFFFFFFF;
        return NVML_SUCCESS;
      }
    }
    auto now = std::chrono::steady_clock::now();
    if (now >= deadline) return NVML_ERROR_TIMEOUT;
    std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(
        deadline - now, std::chrono::milliseconds(5)));
  }
}
