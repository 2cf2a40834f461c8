// web_root: where the dashboard's files are (cairn.http.web-root,
// docs/configuration.md).
//
// An absolute web-root is taken as it is. A relative one is looked up, in
// this order, below: the directory of the config file (if one was given),
// the current directory, then the binary's directory and up to three of its
// parents, each also as `share/cairn/<web-root>` (so that /usr/bin/cairn-node
// finds /usr/share/cairn/web, and build/apps/cairn-node/cairn-node finds the
// repository's web/). The first candidate holding an index.html wins.
// Pure function of the file system; no threads.
#pragma once

#include <string>
#include <vector>

namespace cairn::runtime {

struct web_root_lookup {
  std::string path;                ///< the directory found; empty if none
  std::vector<std::string> tried;  ///< every candidate, in order (for the warning)
};

/// Looks `configured` up as the header says. `config_file` may be empty;
/// `exe` is the binary's path (empty: /proc/self/exe).
[[nodiscard]] web_root_lookup find_web_root(const std::string& configured,
                                            const std::string& config_file,
                                            std::string exe = {});

} // namespace cairn::runtime
