// WriteFileAtomic replaces whole, leaves no temporary behind and fails cleanly; ReadSmallFile
// bounds what it reads and says NotFound.
#include "src/common/files.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

namespace slicer {
namespace {

TEST(Files, WriteAtomicReplacesAndReadSmallFileBoundsTheSize) {
  char tmpl[] = "/tmp/slicer-mps-files-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string path = std::string(tmpl) + "/f";
  ASSERT_TRUE(WriteFileAtomic(path, "one").ok());
  ASSERT_TRUE(WriteFileAtomic(path, "two").ok());
  EXPECT_EQ(*ReadSmallFile(path), "two");
  EXPECT_EQ(access((path + ".tmp").c_str(), F_OK), -1);
  EXPECT_EQ(ReadSmallFile(path, 2).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(ReadSmallFile(path + "-missing").status().code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(WriteFileAtomic(std::string(tmpl) + "/no/such/dir/f", "x").ok());
  unlink(path.c_str());
  rmdir(tmpl);
}

TEST(Files, MakeDirsMakesEveryComponentAndNamesTheOneItCannot) {
  char tmpl[] = "/tmp/slicer-mkdirs-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string deep = std::string(tmpl) + "/a/b/c";
  ASSERT_TRUE(MakeDirs(deep).ok());
  EXPECT_EQ(access(deep.c_str(), F_OK), 0);
  EXPECT_TRUE(MakeDirs(deep).ok());  // already there
  ASSERT_TRUE(WriteFileAtomic(std::string(tmpl) + "/file", "x").ok());
  absl::Status s = MakeDirs(std::string(tmpl) + "/file/sub");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("/file/sub"), absl::string_view::npos) << s;
  for (const char* p : {"/a/b/c", "/a/b", "/a", "/file"}) {
    std::string path = std::string(tmpl) + p;
    (void)(rmdir(path.c_str()) == 0 || unlink(path.c_str()) == 0);
  }
  rmdir(tmpl);
}

}  // namespace
}  // namespace slicer
