// Path pieces, the way the plugin and the CLI need them: plain string operations, no file system.
#ifndef SLICER_COMMON_PATHS_H_
#define SLICER_COMMON_PATHS_H_

#include <string>

namespace slicer {

// The folder part of `path`: everything before its last '/'; "." when it has none ("/x" gives "").
std::string Dirname(const std::string& path);
// The part after the last '/'; `path` itself when it has none.
std::string Basename(const std::string& path);

}  // namespace slicer

#endif  // SLICER_COMMON_PATHS_H_
