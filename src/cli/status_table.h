// The table `slicer status` prints from the arbiter's /metrics text (docs/arbiter.md): one row
// per namespace/pod/container/GPU. Pure: no I/O.
#ifndef SLICER_CLI_STATUS_TABLE_H_
#define SLICER_CLI_STATUS_TABLE_H_

#include <string>

namespace slicer::cli {

// The header line, one row per series (observe-only MPS clients: WEIGHT "mps", SHARE and GOT
// "-"), or "(no clients yet)". Lines of `text` that are not samples are ignored.
std::string StatusTable(const std::string& text);

}  // namespace slicer::cli

#endif  // SLICER_CLI_STATUS_TABLE_H_
