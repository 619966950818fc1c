#include "src/mps/layout.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace slicer::mps {

absl::Status ValidateRoot(const std::string& root) {
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("MPS root \"", root, "\" ", why));
  };
  if (root.empty() || root[0] != '/') return bad("must be an absolute path, e.g. /run/nvidia/mps");
  if (root == "/") return bad("must be a directory of its own, not /");
  if (root.back() == '/') return bad("must be written without a trailing '/'");
  for (absl::string_view part : absl::StrSplit(absl::string_view(root).substr(1), '/')) {
    if (part.empty() || part == "." || part == "..") {
      return bad("must be written without empty, . or .. components");
    }
  }
  constexpr size_t kMaxSocketPath = 107;
  const std::string longest = Layout(root).ControlSocket("GPU-" + std::string(36, 'f'));
  if (longest.size() > kMaxSocketPath) {
    return bad(absl::StrCat("is too long: a GPU's control socket (", longest.size(),
                            " bytes) must fit a unix socket address (", kMaxSocketPath, ")"));
  }
  return absl::OkStatus();
}

bool IsGpuUuid(const std::string& uuid) {
  if (uuid.size() <= 4 || uuid.size() > 64 || uuid.rfind("GPU-", 0) != 0) return false;
  for (size_t i = 4; i < uuid.size(); ++i) {
    const char c = uuid[i];
    const bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
    if (!hex && c != '-') return false;
  }
  return true;
}

}  // namespace slicer::mps
