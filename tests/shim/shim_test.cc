// libslicer.so end to end on the CPU: shim_cuda_client runs under the shim (LD_PRELOAD) against
// the fake libcuda.so.1, with the environment the device plugin or `slicer run` would set.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace {

constexpr char kGpu0[] = "GPU-11111111-1111-1111-1111-111111111111";
constexpr char kGpu1[] = "GPU-22222222-2222-2222-2222-222222222222";
constexpr int kOom = 2;  // CUDA_ERROR_OUT_OF_MEMORY

struct Result {
  int exit_code = -1;
  std::string out;
  std::string err;
  // The `op=<op> ...` line of the n-th operation named `op` (0-based).
  std::string Line(const std::string& op, int n = 0) const {
    std::istringstream in(out);
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind("op=" + op + " ", 0) == 0 && n-- == 0) return line;
    }
    return "(no line for " + op + ")";
  }
  std::string Field(const std::string& op, const std::string& key, int n = 0) const {
    std::string line = " " + Line(op, n) + " ";
    size_t at = line.find(" " + key + "=");
    if (at == std::string::npos) return "(no " + key + ")";
    at += key.size() + 2;
    return line.substr(at, line.find(' ', at) - at);
  }
  int Code(const std::string& op, int n = 0) const {
    std::string r = Field(op, "result", n);
    return r[0] == '(' ? -1000 : std::stoi(r);
  }
};

using Env = std::map<std::string, std::string>;

class ShimTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/slicer-shim-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    std::ofstream(dir_ + "/machine.yaml")
        << "driverVersion: \"580.159.04\"\ndevices:\n"
        << "  - {uuid: " << kGpu0 << ", name: Tesla T4, memoryMiB: 16384}\n"
        << "  - {uuid: " << kGpu1 << ", name: Tesla T4, memoryMiB: 16384}\n";
    base_ = {{"LD_PRELOAD", SHIM_PRELOAD},
             {"LD_LIBRARY_PATH", FAKES_DIR},
             {"SLICER_FAKE_NVML", dir_ + "/machine.yaml"},
             {"SLICER_LEDGER_DIR", dir_},
             {"SLICER_CONTAINER_ID", "c1"},
             {"SLICER_MEMORY_LIMITS", "*=1073741824"},
             {"PATH", "/usr/bin:/bin"}};
  }
  void TearDown() override {
    for (pid_t pid : children_) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
    std::system(("rm -rf " + dir_).c_str());
  }

  Env With(Env changes) const {
    Env env = base_;
    for (auto& [k, v] : changes) {
      if (v.empty()) env.erase(k);
      else env[k] = v;
    }
    return env;
  }

  pid_t Spawn(const std::vector<std::string>& ops, const Env& env, int out_fd, int err_fd) {
    pid_t pid = fork();
    if (pid == 0) {
      dup2(out_fd, 1);
      dup2(err_fd, 2);
      std::vector<std::string> env_strings;
      for (auto& [k, v] : env) env_strings.push_back(k + "=" + v);
      std::vector<char*> envp, argv;
      for (auto& s : env_strings) envp.push_back(s.data());
      envp.push_back(nullptr);
      std::string prog = CLIENT_PATH;
      argv.push_back(prog.data());
      std::vector<std::string> copies = ops;
      for (auto& s : copies) argv.push_back(s.data());
      argv.push_back(nullptr);
      execve(prog.c_str(), argv.data(), envp.data());
      _exit(127);
    }
    return pid;
  }

  Result Run(const std::vector<std::string>& ops, const Env& env) {
    std::string out = dir_ + "/out", err = dir_ + "/err";
    int o = open(out.c_str(), O_CREAT | O_TRUNC | O_WRONLY, 0644);
    int e = open(err.c_str(), O_CREAT | O_TRUNC | O_WRONLY, 0644);
    pid_t pid = Spawn(ops, env, o, e);
    close(o);
    close(e);
    int status;
    waitpid(pid, &status, 0);
    Result r;
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    std::stringstream so, se;
    so << std::ifstream(out).rdbuf();
    se << std::ifstream(err).rdbuf();
    r.out = so.str();
    r.err = se.str();
    return r;
  }
  Result Run(const std::vector<std::string>& ops) { return Run(ops, base_); }

  // Starts a client whose last operation is `hold`; returns once it holds what it allocated.
  pid_t Hold(std::vector<std::string> ops, const Env& env) {
    ops.push_back("hold");
    int p[2];
    EXPECT_EQ(pipe(p), 0);
    int e = open("/dev/null", O_WRONLY);
    pid_t pid = Spawn(ops, env, p[1], e);
    close(p[1]);
    close(e);
    children_.push_back(pid);
    std::string seen;
    char c;
    while (seen.find("holding") == std::string::npos && read(p[0], &c, 1) == 1) seen += c;
    close(p[0]);
    EXPECT_NE(seen.find("holding"), std::string::npos) << seen;
    EXPECT_EQ(seen.find("result=2"), std::string::npos) << seen;
    return pid;
  }
  void Kill(pid_t pid) {
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    std::erase(children_, pid);
  }

  std::string dir_;
  Env base_;
  std::vector<pid_t> children_;
};

TEST_F(ShimTest, DirectAllocationsStopAtTheCapWithOutOfMemory) {
  Result r = Run({"init", "alloc:600M", "alloc:600M", "free", "alloc:424M"});
  EXPECT_EQ(r.Code("alloc:600M", 0), 0);
  EXPECT_EQ(r.Field("alloc:600M", "fn"), "shim");
  EXPECT_EQ(r.Code("alloc:600M", 1), kOom);
  EXPECT_EQ(r.Code("free"), 0);
  EXPECT_EQ(r.Code("alloc:424M"), 0);  // 600 MiB freed: 424 MiB fit beside... nothing else
  EXPECT_NE(r.err.find("event=over_cap"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("cap=1073741824"), std::string::npos) << r.err;
}

TEST_F(ShimTest, FreeingGivesMemoryBack) {
  Result r = Run({"init", "alloc:1G", "free", "alloc:1G", "free", "alloc:1G"});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
}

TEST_F(ShimTest, MemGetInfoAndTotalMemReportTheCap) {
  Result r = Run({"init", "alloc:256M", "info", "infoproc", "totalmem"});
  EXPECT_EQ(r.Field("info", "total"), "1073741824");
  EXPECT_EQ(r.Field("info", "free"), std::to_string(768u << 20));
  EXPECT_EQ(r.Field("infoproc", "total"), "1073741824");
  EXPECT_EQ(r.Field("infoproc", "free"), std::to_string(768u << 20));
  EXPECT_EQ(r.Field("totalmem", "bytes"), "1073741824");
}

// What nvidia-smi-like tools and pynvml see inside a container: NVML's memory queries report the
// cap and this container's use of it (the fake NVML itself reports the whole 16 GiB, unused).
TEST_F(ShimTest, NvmlMemoryInfoReportsTheCap) {
  Result r = Run({"init", "alloc:256M", "nvml", "nvml:v2"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  for (const char* op : {"nvml", "nvml:v2"}) {
    EXPECT_EQ(r.Field(op, "total"), "1073741824") << r.out;
    EXPECT_EQ(r.Field(op, "free"), std::to_string(768u << 20)) << r.out;
    EXPECT_EQ(r.Field(op, "used"), std::to_string(256u << 20)) << r.out;
  }
  // Without the shim, the same program sees the fake's whole device: the check above can fail.
  Result plain = Run({"init", "alloc:256M", "nvml"}, With({{"LD_PRELOAD", ""}}));
  EXPECT_EQ(plain.Field("nvml", "total"), std::to_string(16384ull << 20)) << plain.out << plain.err;
}

TEST_F(ShimTest, EveryPathToTheDriverIsCapped) {
  for (const char* internal : {"0", "1"}) {
    for (std::string via : {"direct", "proc", "procv1", "dlsym", "procdl"}) {
      std::string op = "alloc:600M:" + via;
      Result r = Run({"init", op, op}, With({{"SLICER_FAKE_CUDA_PROC_INTERNAL", internal}}));
      EXPECT_EQ(r.Code(op, 0), 0) << via << " internal=" << internal << "\n" << r.out << r.err;
      EXPECT_EQ(r.Field(op, "fn"), "shim") << via << " internal=" << internal;
      EXPECT_EQ(r.Code(op, 1), kOom) << via << " internal=" << internal << "\n" << r.out;
    }
  }
}

TEST_F(ShimTest, GetProcAddressReturnsTheMatchingVariant) {
  for (const char* internal : {"0", "1"}) {
    Result r = Run({"init",
                    "gpa:cuMemAlloc:13000:0",           // _v2, wrapped
                    "gpa:cuMemAllocAsync:13000:2",      // per-thread: _ptsz, wrapped
                    "gpa:cuMemAllocAsync:13000:1",      // legacy stream
                    "gpa:cuMemAllocAsync:13000:0",      // default = legacy in the driver
                    "gpa:cuMemAllocAsync:11000:0",      // older than the function
                    "gpa:cuNoSuchFunction:13000:0",     // unknown
                    "gpa:cuMemAlloc_v2:13000:0",        // suffixed names are not symbols
                    "gpa:cuLaunchKernel:13000:0",       // gated by the arbiter: wrapped
                    "gpa:cuLaunchKernel:13000:2",       // per-thread: _ptsz, wrapped
                    "gpa:cuCtxSynchronize:12000:0",     // the old one
                    "gpa:cuCtxSynchronize:13000:0",     // _v2 (takes a context) since 13.0
                    "gpa:cuStreamCreate:13000:0",       // not hooked: the driver's own
                    "gpa:cuGetProcAddress:12000:0",     // the v2 entry point, wrapped
                    "gpa:cuGetProcAddress:11030:0",     // the v1 entry point, wrapped
                    "gpa:cuMemGetInfo:2000:0",          // 32-bit v1: refused (fail closed)
                    "gpa:cuMemAlloc:99000:0",           // newer than the driver
                    "gpa1:cuMemFree:12000:0",           // through the v1 entry point
                    "gpa:cuMemGetInfo:13000:0"},
                   With({{"SLICER_FAKE_CUDA_PROC_INTERNAL", internal}}));
    SCOPED_TRACE(std::string("internal=") + internal + "\n" + r.out);
    auto expect = [&](const std::string& op, const std::string& lib, const std::string& name,
                      const std::string& status) {
      EXPECT_EQ(r.Field(op, "lib"), lib) << op;
      if (!name.empty()) {
        EXPECT_EQ(r.Field(op, "name"), name) << op;
      }
      EXPECT_EQ(r.Field(op, "status"), status) << op;
    };
    expect("gpa:cuMemAlloc:13000:0", "shim", "cuMemAlloc_v2", "0");
    expect("gpa:cuMemAllocAsync:13000:2", "shim", "cuMemAllocAsync_ptsz", "0");
    expect("gpa:cuMemAllocAsync:13000:1", "shim", "cuMemAllocAsync", "0");
    expect("gpa:cuMemAllocAsync:13000:0", "shim", "cuMemAllocAsync", "0");
    expect("gpa:cuMemAllocAsync:11000:0", "none", "", "2");
    expect("gpa:cuNoSuchFunction:13000:0", "none", "", "1");
    expect("gpa:cuMemAlloc_v2:13000:0", "none", "", "1");
    expect("gpa:cuLaunchKernel:13000:0", "shim", "cuLaunchKernel", "0");
    expect("gpa:cuLaunchKernel:13000:2", "shim", "cuLaunchKernel_ptsz", "0");
    expect("gpa:cuCtxSynchronize:12000:0", "shim", "cuCtxSynchronize", "0");
    expect("gpa:cuCtxSynchronize:13000:0", "shim", "cuCtxSynchronize_v2", "0");
    expect("gpa:cuStreamCreate:13000:0", "driver", "", "0");
    expect("gpa:cuGetProcAddress:12000:0", "shim", "cuGetProcAddress_v2", "0");
    expect("gpa:cuGetProcAddress:11030:0", "shim", "cuGetProcAddress", "0");
    expect("gpa:cuMemGetInfo:2000:0", "none", "", "2");
    expect("gpa:cuMemGetInfo:13000:0", "shim", "cuMemGetInfo_v2", "0");
    EXPECT_EQ(r.Code("gpa:cuMemAlloc:99000:0"), 1);  // CUDA_ERROR_INVALID_VALUE, as the driver
    EXPECT_EQ(r.Field("gpa1:cuMemFree:12000:0", "lib"), "shim");
    EXPECT_EQ(r.Field("gpa1:cuMemFree:12000:0", "name"), "cuMemFree_v2");
    if (std::string(internal) == "0") {
      EXPECT_EQ(r.Field("gpa:cuStreamCreate:13000:0", "name"), "cuStreamCreate");
    }
  }
}

TEST_F(ShimTest, StreamOrderedAllocationsAndPoolsAreCapped) {
  Result r = Run({"init", "async:600M:0", "async:600M:2", "freeasync", "async:600M:2"});
  EXPECT_EQ(r.Code("async:600M:0"), 0);
  EXPECT_EQ(r.Field("async:600M:2", "fn", 0), "shim");
  EXPECT_EQ(r.Code("async:600M:2", 0), kOom);
  EXPECT_EQ(r.Code("freeasync"), 0);
  EXPECT_EQ(r.Code("async:600M:2", 1), 0);

  r = Run({"init", "pool:600M", "pool:600M", "hostpool:4G", "defpool:300M:0", "defpool:200M:0"});
  EXPECT_EQ(r.Code("pool:600M", 0), 0);
  EXPECT_EQ(r.Code("pool:600M", 1), kOom);
  EXPECT_EQ(r.Code("hostpool:4G"), 0);  // host memory is not the GPU's
  EXPECT_EQ(r.Code("defpool:300M:0"), 0);
  EXPECT_EQ(r.Code("defpool:200M:0"), kOom);
}

TEST_F(ShimTest, DefaultPoolOfAnotherDeviceIsChargedToThatDevice) {
  Env env = With({{"SLICER_MEMORY_LIMITS",
                   std::string(kGpu0) + "=1073741824," + kGpu1 + "=536870912"}});
  Result r = Run({"init", "defpool:600M:1", "defpool:500M:1", "alloc:1G"}, env);
  EXPECT_EQ(r.Code("defpool:600M:1"), kOom) << r.out << r.err;
  EXPECT_EQ(r.Code("defpool:500M:1"), 0);
  EXPECT_EQ(r.Code("alloc:1G"), 0);  // device 0's cap is untouched
}

TEST_F(ShimTest, VirtualMemoryIsCappedForDeviceLocationsOnly) {
  Result r = Run({"init", "vmm:512M", "vmm:512M", "vmm:2M", "release", "vmm:2M", "vmm:4G:host"});
  EXPECT_EQ(r.Code("vmm:512M", 0), 0);
  EXPECT_EQ(r.Code("vmm:512M", 1), 0);
  EXPECT_EQ(r.Code("vmm:2M", 0), kOom);
  EXPECT_EQ(r.Code("release"), 0);
  EXPECT_EQ(r.Code("vmm:2M", 1), 0);
  EXPECT_EQ(r.Code("vmm:4G:host"), 0);
}

TEST_F(ShimTest, ArraysManagedAndPitchedMemoryAreCapped) {
  Result r = Run({"init", "array:16384:16384", "alloc:1M", "arraydestroy", "alloc:1M"});
  EXPECT_EQ(r.Code("array:16384:16384"), 0);  // 1 GiB of floats: exactly the cap
  EXPECT_EQ(r.Code("alloc:1M", 0), kOom);
  EXPECT_EQ(r.Code("arraydestroy"), 0);
  EXPECT_EQ(r.Code("alloc:1M", 1), 0);

  r = Run({"init", "managed:600M", "managed:600M"});
  EXPECT_EQ(r.Code("managed:600M", 0), 0);
  EXPECT_EQ(r.Code("managed:600M", 1), kOom);

  r = Run({"init", "pitch:1000:614400", "alloc:500M", "free", "alloc:500M"});
  EXPECT_EQ(r.Code("pitch:1000:614400"), 0);  // pitch 1024 x 600 Ki rows = 600 MiB
  EXPECT_EQ(r.Field("pitch:1000:614400", "pitch"), "1024");
  EXPECT_EQ(r.Code("alloc:500M", 0), kOom);
  EXPECT_EQ(r.Code("free"), 0);
  EXPECT_EQ(r.Code("alloc:500M", 1), 0);
}

TEST_F(ShimTest, MissingOrMalformedCapFailsClosed) {
  Result r = Run({"init", "alloc:1M", "info"},
                 With({{"SLICER_MEMORY_LIMITS", ""}, {"SLICER_ENFORCE", "1"}}));
  EXPECT_EQ(r.exit_code, kOom);
  EXPECT_EQ(r.Code("alloc:1M"), kOom);
  EXPECT_EQ(r.Field("info", "free"), "0");
  EXPECT_NE(r.err.find("SLICER_MEMORY_LIMITS is not set"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("fail closed"), std::string::npos) << r.err;

  r = Run({"init", "vmm:2M", "async:1M:0"}, With({{"SLICER_MEMORY_LIMITS", "GPU-1=lots"}}));
  EXPECT_EQ(r.Code("vmm:2M"), kOom);
  EXPECT_EQ(r.Code("async:1M:0"), kOom);
  EXPECT_NE(r.err.find("SLICER_MEMORY_LIMITS is malformed"), std::string::npos) << r.err;
}

TEST_F(ShimTest, GpuWithoutACapIsRefused) {
  Result r = Run({"device:0", "alloc:1M", "device:1", "alloc:1M"},
                 With({{"SLICER_MEMORY_LIMITS", std::string(kGpu0) + "=1073741824"}}));
  EXPECT_EQ(r.Code("alloc:1M", 0), 0);
  EXPECT_EQ(r.Code("alloc:1M", 1), kOom);
  EXPECT_NE(r.err.find("names no cap for this GPU"), std::string::npos) << r.err;
}

TEST_F(ShimTest, OptOutOnlyWhereTheConfigAllowsIt) {
  Result r = Run({"init", "alloc:2G"},
                 With({{"SLICER_OPT_OUT", "1"}, {"SLICER_OPT_OUT_ALLOWED", "1"}}));
  EXPECT_EQ(r.Code("alloc:2G"), 0);
  r = Run({"init", "alloc:2G"}, With({{"SLICER_OPT_OUT", "1"}}));
  EXPECT_EQ(r.Code("alloc:2G"), kOom);
  EXPECT_NE(r.err.find("event=opt_out_refused"), std::string::npos) << r.err;
}

TEST_F(ShimTest, WithoutConfigurationEverythingPassesThrough) {
  Result r = Run({"init", "alloc:2G", "info"},
                 With({{"SLICER_MEMORY_LIMITS", ""}, {"SLICER_CONTAINER_ID", ""}}));
  EXPECT_EQ(r.Code("alloc:2G"), 0);
  EXPECT_EQ(r.Field("info", "total"), std::to_string(16384ull << 20));
}

TEST_F(ShimTest, ProcessesOfOneContainerShareTheCapAndDeadOnesGiveItBack) {
  pid_t holder = Hold({"init", "alloc:600M"}, base_);
  Result r = Run({"init", "info", "alloc:600M", "alloc:400M"});
  EXPECT_EQ(r.Field("info", "free"), std::to_string(424u << 20));
  EXPECT_EQ(r.Code("alloc:600M"), kOom);
  EXPECT_EQ(r.Code("alloc:400M"), 0);
  Kill(holder);  // killed mid-way, never freed
  r = Run({"init", "alloc:1G"});
  EXPECT_EQ(r.Code("alloc:1G"), 0) << r.err;
}

TEST_F(ShimTest, TwoContainersSideBySideDoNotTouch) {
  Hold({"init", "alloc:900M"}, base_);
  Result r = Run({"init", "alloc:900M", "info"}, With({{"SLICER_CONTAINER_ID", "c2"}}));
  EXPECT_EQ(r.Code("alloc:900M"), 0);
  EXPECT_EQ(r.Field("info", "free"), std::to_string(124u << 20));
  r = Run({"init", "alloc:900M"});
  EXPECT_EQ(r.Code("alloc:900M"), kOom);
}

TEST_F(ShimTest, UnhookedCallsPassThroughAndDlsymNextKeepsItsMeaning) {
  Result r = Run({"init", "launch:100:1000", "rtldnext"});
  EXPECT_EQ(r.Code("launch:100:1000"), 0);
  // From the program, "the next cuMemAlloc_v2 after me" is the preloaded shim's.
  EXPECT_EQ(r.Field("rtldnext", "lib"), "shim");
}

TEST_F(ShimTest, CallsBeforeCuInitFailLikeTheDriverAndDoNotHang) {
  Result r = Run({"alloc:1M", "info", "vmm:2M", "init", "alloc:1M"});
  EXPECT_EQ(r.Code("alloc:1M", 0), 3);  // CUDA_ERROR_NOT_INITIALIZED
  EXPECT_EQ(r.Code("info"), 3);
  EXPECT_EQ(r.Code("vmm:2M"), 3);
  EXPECT_EQ(r.Code("alloc:1M", 1), 0);
}

}  // namespace
