#include "src/shim/ledger.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <string>

namespace {

class LedgerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/slicer-ledger-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::system(("rm -rf " + dir_).c_str()); }

  slicer_ledger* Open(const char* container = "c1", const char* gpu = "GPU-1") {
    char err[256] = "";
    slicer_ledger* l = slicer_ledger_open(dir_.c_str(), container, gpu, err, sizeof err);
    EXPECT_NE(l, nullptr) << err;
    return l;
  }
  std::string Path(const char* container = "c1", const char* gpu = "GPU-1") {
    return dir_ + "/slicer-" + container + "-" + gpu + ".ledger";
  }

  // Runs `fn` in a child that keeps running (holding its slot) until Kill().
  pid_t Child(void (*fn)(const std::string&), int* ready_fd) {
    int p[2];
    EXPECT_EQ(pipe(p), 0);
    pid_t pid = fork();
    if (pid == 0) {
      close(p[0]);
      fn(dir_);
      char c = 'r';
      (void)!write(p[1], &c, 1);
      while (true) pause();
    }
    close(p[1]);
    char c;
    EXPECT_EQ(read(p[0], &c, 1), 1);
    *ready_fd = p[0];
    return pid;
  }
  static void Kill(pid_t pid) {
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
  }

  std::string dir_;
};

constexpr uint64_t kMiB = 1 << 20;

TEST_F(LedgerTest, ChargesWithinCapAndRefusesPastIt) {
  slicer_ledger* l = Open();
  uint64_t used = 0;
  EXPECT_EQ(slicer_ledger_reserve(l, 600 * kMiB, 1024 * kMiB, &used), 0);
  EXPECT_EQ(used, 600 * kMiB);
  EXPECT_EQ(slicer_ledger_reserve(l, 500 * kMiB, 1024 * kMiB, &used), 1);
  EXPECT_EQ(slicer_ledger_mine(l), 600 * kMiB);
  EXPECT_EQ(slicer_ledger_reserve(l, 424 * kMiB, 1024 * kMiB, &used), 0);  // exactly the cap
  slicer_ledger_release(l, 1024 * kMiB);
  EXPECT_EQ(slicer_ledger_used(l), 0u);
  slicer_ledger_release(l, 5);  // more than held: clamps
  EXPECT_EQ(slicer_ledger_mine(l), 0u);
}

TEST_F(LedgerTest, ProcessesOfOneContainerShareTheCap) {
  int fd;
  pid_t child = Child(
      [](const std::string& dir) {
        char err[256];
        slicer_ledger* l = slicer_ledger_open(dir.c_str(), "c1", "GPU-1", err, sizeof err);
        if (l == nullptr || slicer_ledger_reserve(l, 700 * kMiB, 1024 * kMiB, nullptr) != 0) _exit(3);
      },
      &fd);
  slicer_ledger* l = Open();
  EXPECT_EQ(slicer_ledger_used(l), 700 * kMiB);
  EXPECT_EQ(slicer_ledger_reserve(l, 400 * kMiB, 1024 * kMiB, nullptr), 1);
  EXPECT_EQ(slicer_ledger_reserve(l, 300 * kMiB, 1024 * kMiB, nullptr), 0);
  // Another container and another GPU are untouched.
  slicer_ledger* other = Open("c2");
  EXPECT_EQ(slicer_ledger_reserve(other, 1024 * kMiB, 1024 * kMiB, nullptr), 0);
  slicer_ledger* gpu2 = Open("c1", "GPU-2");
  EXPECT_EQ(slicer_ledger_reserve(gpu2, 1024 * kMiB, 1024 * kMiB, nullptr), 0);
  // The child dies without a word: its memory comes back.
  Kill(child);
  EXPECT_EQ(slicer_ledger_reserve(l, 700 * kMiB, 1024 * kMiB, nullptr), 0);
  EXPECT_EQ(slicer_ledger_used(l), 1000 * kMiB);
}

TEST_F(LedgerTest, GarbageFileIsRebuilt) {
  {
    int fd = open(Path().c_str(), O_CREAT | O_WRONLY, 0666);
    std::string junk(5000, '\xff');
    ASSERT_EQ(write(fd, junk.data(), junk.size()), static_cast<ssize_t>(junk.size()));
    close(fd);
  }
  slicer_ledger* l = Open();
  EXPECT_EQ(slicer_ledger_used(l), 0u);
  EXPECT_EQ(slicer_ledger_reserve(l, 100, 1000, nullptr), 0);
  EXPECT_EQ(slicer_ledger_used(l), 100u);
}

TEST_F(LedgerTest, HostileValuesInDeadSlotsAreReclaimed) {
  slicer_ledger* l = Open();
  ASSERT_EQ(slicer_ledger_reserve(l, 1, 1000, nullptr), 0);
  // Write huge byte counts into every other slot, as a crashed or hostile process might; nobody
  // holds those slots, so they are reclaimed and cannot overflow the sum into a small number.
  int fd = open(Path().c_str(), O_RDWR);
  for (int i = 1; i < SLICER_LEDGER_SLOTS; ++i) {
    uint64_t v = i % 2 ? UINT64_MAX : (UINT64_C(1) << 63) + 7;
    pwrite(fd, &v, sizeof v, SLICER_LEDGER_HEADER + i * SLICER_LEDGER_SLOT_SIZE + 8);
  }
  close(fd);
  EXPECT_EQ(slicer_ledger_reserve(l, 500, 1000, nullptr), 0);
  EXPECT_EQ(slicer_ledger_used(l), 501u);
}

TEST_F(LedgerTest, HostileValueInLiveSlotSaturatesInsteadOfWrapping) {
  int fd;
  pid_t child = Child(
      [](const std::string& dir) {
        char err[256];
        slicer_ledger* l = slicer_ledger_open(dir.c_str(), "c1", "GPU-1", err, sizeof err);
        if (l == nullptr || slicer_ledger_reserve(l, 1, 1000, nullptr) != 0) _exit(3);
      },
      &fd);
  slicer_ledger* l = Open();
  // Find the child's slot and poke a value that would wrap a plain 64-bit sum to a small one.
  int f = open(Path().c_str(), O_RDWR);
  for (int i = 0; i < SLICER_LEDGER_SLOTS; ++i) {
    uint64_t v;
    pread(f, &v, sizeof v, SLICER_LEDGER_HEADER + i * SLICER_LEDGER_SLOT_SIZE + 8);
    if (v == 1) {
      v = UINT64_MAX - 10;
      pwrite(f, &v, sizeof v, SLICER_LEDGER_HEADER + i * SLICER_LEDGER_SLOT_SIZE + 8);
    }
  }
  close(f);
  EXPECT_EQ(slicer_ledger_reserve(l, 20, UINT64_C(1) << 40, nullptr), 1);
  Kill(child);
  EXPECT_EQ(slicer_ledger_reserve(l, 20, UINT64_C(1) << 40, nullptr), 0);
}

TEST_F(LedgerTest, ForkedChildStartsWithNothing) {
  slicer_ledger* l = Open();
  ASSERT_EQ(slicer_ledger_reserve(l, 600, 1000, nullptr), 0);
  pid_t pid = fork();
  if (pid == 0) {
    slicer_ledger_after_fork_child(l);
    // The parent's 600 count; the child may take the remaining 400 and no more.
    int a = slicer_ledger_reserve(l, 400, 1000, nullptr);
    int b = slicer_ledger_reserve(l, 1, 1000, nullptr);
    _exit(a == 0 && b == 1 ? 0 : 1);
  }
  int status;
  waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_EQ(slicer_ledger_used(l), 600u);  // the child's share went with it
}

TEST_F(LedgerTest, UnwritableDirectoryIsAnError) {
  char err[256] = "";
  EXPECT_EQ(slicer_ledger_open("/nonexistent/dir", "c", "GPU-1", err, sizeof err), nullptr);
  EXPECT_NE(std::string(err).find("cannot open ledger"), std::string::npos);
}

TEST_F(LedgerTest, RacingProcessesNeverPassTheCap) {
  // 8 processes each try 200 reservations of 1 MiB against a 100 MiB cap, all at once, and hold
  // what they won until every one has reported.
  const int kProcs = 8;
  int report[2], hold[2];
  ASSERT_EQ(pipe(report), 0);
  ASSERT_EQ(pipe(hold), 0);
  pid_t pids[kProcs];
  for (int p = 0; p < kProcs; ++p) {
    pids[p] = fork();
    if (pids[p] == 0) {
      close(hold[1]);
      char err[256];
      slicer_ledger* l = slicer_ledger_open(dir_.c_str(), "race", "GPU-1", err, sizeof err);
      for (int i = 0; i < 200; ++i) slicer_ledger_reserve(l, kMiB, 100 * kMiB, nullptr);
      uint32_t won = static_cast<uint32_t>(slicer_ledger_mine(l) / kMiB);
      (void)!write(report[1], &won, sizeof won);
      char c;
      (void)!read(hold[0], &c, 1);
      _exit(0);
    }
  }
  close(hold[0]);
  uint64_t total = 0;
  for (int p = 0; p < kProcs; ++p) {
    uint32_t won = 0;
    ASSERT_EQ(read(report[0], &won, sizeof won), static_cast<ssize_t>(sizeof won));
    total += won;
  }
  close(hold[1]);
  for (pid_t pid : pids) waitpid(pid, nullptr, 0);
  EXPECT_LE(total, 100u);
  EXPECT_GE(total, 90u);  // near the cap a race may refuse a little, not much
}

}  // namespace
