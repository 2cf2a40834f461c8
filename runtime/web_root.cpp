#include "runtime/web_root.hpp"

#include <filesystem>
#include <system_error>

namespace cairn::runtime {

namespace fs = std::filesystem;

web_root_lookup find_web_root(const std::string& configured,
                              const std::string& config_file,
                              std::string exe) {
  web_root_lookup out;
  if (configured.empty())
    return out;
  std::error_code ec;
  auto holds_index = [&](const fs::path& dir) {
    return fs::is_regular_file(dir / "index.html", ec);
  };
  auto consider = [&](const fs::path& dir) {
    if (!out.path.empty())
      return;
    auto text = dir.lexically_normal().string();
    out.tried.push_back(text);
    if (holds_index(dir))
      out.path = text;
  };
  fs::path root{configured};
  if (root.is_absolute()) {
    consider(root);
    return out;
  }
  if (!config_file.empty()) {
    auto dir = fs::absolute(fs::path{config_file}, ec).parent_path();
    if (!ec)
      consider(dir / root);
  }
  consider(root);
  if (exe.empty())
    exe = fs::read_symlink("/proc/self/exe", ec).string();
  if (!exe.empty()) {
    auto dir = fs::path{exe}.parent_path();
    for (int up = 0; up <= 3 && !dir.empty(); ++up) {
      consider(dir / root);
      consider(dir / "share" / "cairn" / root);
      if (dir == dir.parent_path())
        break;
      dir = dir.parent_path();
    }
  }
  return out;
}

} // namespace cairn::runtime
