#include "runtime/web_root.hpp"

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

using namespace cairn::runtime;
namespace fs = std::filesystem;

namespace {

// Not "web": the current directory is also a candidate, and a test run from
// the repository root must not find the real dashboard.

/// A scratch tree: <tmp>/{etc/cairn, usr/bin, usr/share/cairn/web, repo/...}.
struct tree {
  fs::path root = fs::temp_directory_path() / "cairn-web-root-test";
  tree() {
    fs::remove_all(root);
    fs::create_directories(root / "etc" / "cairn");
    fs::create_directories(root / "usr" / "bin");
    fs::create_directories(root / "repo" / "build" / "apps");
  }
  ~tree() { fs::remove_all(root); }
  void dashboard(const fs::path& dir) {
    fs::create_directories(dir);
    std::ofstream{dir / "index.html"} << "<html></html>\n";
  }
};

} // namespace

TEST_SUITE("runtime.web_root") {

TEST_CASE("a relative web-root is found next to the installed binary") {
  tree t;
  t.dashboard(t.root / "usr" / "share" / "cairn" / "cairn-test-web");
  auto r = find_web_root("cairn-test-web", "", (t.root / "usr" / "bin" / "cairn-node").string());
  CHECK(r.path == (t.root / "usr" / "share" / "cairn" / "cairn-test-web").string());
}

TEST_CASE("the build tree's binary finds the repository's web/") {
  tree t;
  t.dashboard(t.root / "repo" / "cairn-test-web");
  auto r = find_web_root("cairn-test-web", "",
                         (t.root / "repo" / "build" / "apps" / "cairn-node").string());
  CHECK(r.path == (t.root / "repo" / "cairn-test-web").string());
}

TEST_CASE("next to the config file wins over the binary") {
  tree t;
  t.dashboard(t.root / "etc" / "cairn" / "cairn-test-web");
  t.dashboard(t.root / "usr" / "share" / "cairn" / "cairn-test-web");
  auto r = find_web_root("cairn-test-web", (t.root / "etc" / "cairn" / "node.ini").string(),
                         (t.root / "usr" / "bin" / "cairn-node").string());
  CHECK(r.path == (t.root / "etc" / "cairn" / "cairn-test-web").string());
  CHECK(r.tried.size() == 1);
}

TEST_CASE("nothing found: empty path, every candidate listed") {
  tree t;
  auto r = find_web_root("no-such-web", (t.root / "etc" / "cairn" / "n.ini").string(),
                         (t.root / "usr" / "bin" / "cairn-node").string());
  CHECK(r.path.empty());
  CHECK(r.tried.size() >= 4);
  CHECK(r.tried.front() == (t.root / "etc" / "cairn" / "no-such-web").string());
  // A directory without index.html does not count.
  fs::create_directories(t.root / "usr" / "share" / "cairn" / "no-such-web");
  CHECK(find_web_root("no-such-web", "", (t.root / "usr" / "bin" / "x").string())
          .path.empty());
}

TEST_CASE("an absolute web-root is taken as it is") {
  tree t;
  t.dashboard(t.root / "abs");
  CHECK(find_web_root((t.root / "abs").string(), "", "/nonexistent/bin/x").path
        == (t.root / "abs").string());
  CHECK(find_web_root((t.root / "nope").string(), "", "/nonexistent/bin/x").path
          .empty());
  CHECK(find_web_root("", "", "").path.empty());
}

} // TEST_SUITE
