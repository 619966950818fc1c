// Small files written whole and read whole: the plugin's label and preload files, the MPS
// daemons' desired and state files. Errors name the path and errno's text.
#ifndef SLICER_COMMON_FILES_H_
#define SLICER_COMMON_FILES_H_

#include <cstddef>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace slicer {

// mkdir -p, mode 0755. Errors name the component that could not be made.
absl::Status MakeDirs(const std::string& path);
// Writes `contents` to `path` through `path`.tmp and rename(2), mode 0644. Errors name the path
// and errno's text.
absl::Status WriteFileAtomic(const std::string& path, absl::string_view contents);
// Reads a file of at most `max_bytes` (larger: OutOfRange). NotFound when it does not exist.
absl::StatusOr<std::string> ReadSmallFile(const std::string& path, size_t max_bytes = 64 << 10);

}  // namespace slicer

#endif  // SLICER_COMMON_FILES_H_
