"""docs/options.md cannot drift from the binary, and no option goes
undocumented.

1. docs/options.md equals what scripts/gen-options-doc.py renders from
   `cairn-node --help` now (regenerate it when an option changes).
2. Every option is explained in docs/configuration.md or docs/cluster.md:
   by its full name, or (cluster options) as a key of the `[cairn.cluster]`
   INI example there.
"""

import difflib
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cairn_harness as h  # noqa: E402


def main():
    args = h.parse_args(__doc__)
    chk = h.Checker("test_options_doc")
    gen = os.path.join(args.source_dir, "scripts", "gen-options-doc.py")
    binary = os.path.join(args.bin_dir, "cairn-node")
    p = subprocess.run([sys.executable, gen, binary], capture_output=True,
                       text=True, timeout=60)
    chk.require(p.returncode == 0, f"generator failed: {p.stderr}")
    with open(os.path.join(args.source_dir, "docs", "options.md")) as f:
        on_disk = f.read()
    if not chk.check(p.stdout == on_disk,
                     "docs/options.md is stale: run scripts/gen-options-doc.py "
                     "build/apps/cairn-node > docs/options.md"):
        for line in list(difflib.unified_diff(on_disk.splitlines(), p.stdout.splitlines(),
                                              "docs/options.md", "--help", lineterm=""))[:40]:
            h.log("  " + line)
    names = re.findall(r"^\| `([a-z0-9.-]+)` \|", p.stdout, re.M)
    chk.check(len(names) > 40, f"only {len(names)} options parsed from --help")
    docs = ""
    for page in ("configuration.md", "cluster.md"):
        with open(os.path.join(args.source_dir, "docs", page)) as f:
            docs += f.read()
    ini_keys = set(re.findall(r"^([a-z0-9-]+) *=", docs, re.M))
    for name in names:
        documented = name in docs or (name.startswith("cairn.cluster.")
                                      and name.split(".", 2)[2] in ini_keys)
        chk.check(documented, f"option {name} is not explained in docs/configuration.md "
                              f"or docs/cluster.md")
        chk.count()
    return chk.summary()


if __name__ == "__main__":
    h.main_wrapper(main)
