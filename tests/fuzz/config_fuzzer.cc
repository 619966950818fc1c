// libFuzzer entry point for the config parser: any bytes must give a ParseResult (errors or a
// config), never a crash, a hang or a sanitizer report. When the text parses, ResolveResources
// and FormatError must cope with whatever it produced.
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "src/config/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  slicer::config::ParseResult r = slicer::config::Parse(text);
  for (const auto& e : r.errors) (void)slicer::config::FormatError("fuzz.yaml", e);
  if (r.ok()) {
    std::vector<slicer::config::GpuRef> gpus = {{"GPU-0", 0, "Tesla T4", 7, 5},
                                                {"GPU-1", 1, "NVIDIA A100-SXM4-40GB", 8, 0},
                                                {"GPU-2", 2, "Tesla T4", 7, 5},
                                                {"GPU-3", 3, "Tesla P100-PCIE-16GB", 6, 0}};
    (void)slicer::config::ResolveResources(r.config, gpus);
  }
  return 0;
}
