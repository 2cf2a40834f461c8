#!/usr/bin/env python3
"""Writes docs/options.md, the reference of every cairn-node option, from
`cairn-node --help` (the one source of the names, types, defaults and help
texts). tests/integration/test_options_doc.py fails when the page and the
binary disagree, so the page cannot drift.

    scripts/gen-options-doc.py build/apps/cairn-node > docs/options.md
"""
import re
import subprocess
import sys

LINE = re.compile(r"^\s+--(?P<name>[a-z0-9.-]+)=<(?P<type>[^>]+)>\s+(?P<help>.*?)"
                  r"(?: \(default: (?P<default>.*)\))?$")


def options(binary):
    out = subprocess.run([binary, "--help"], capture_output=True, text=True,
                         timeout=30, check=True).stdout
    for line in out.splitlines():
        m = LINE.match(line)
        if m:
            yield m.group("name"), m.group("type"), m.group("default") or "", m.group("help")


def cell(text):
    return text.replace("|", "\\|")


def render(binary):
    rows = list(options(binary))
    out = ["# cairn-node options (generated)", "",
           "Generated from `cairn-node --help` by `scripts/gen-options-doc.py`; do not edit.",
           "What each option means in context: docs/configuration.md and docs/cluster.md.",
           "Every option can be set in the INI file (`[cairn.tcp]` section, key `port`) or on",
           "the command line (`--cairn.tcp.port=7500`).", "",
           "| option | type | default | meaning |", "| --- | --- | --- | --- |"]
    for name, typ, default, help_text in rows:
        out.append(f"| `{name}` | {cell(typ)} | `{cell(default)}` | {cell(help_text)} |")
    out.append("")
    return "\n".join(out), rows


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    text, rows = render(sys.argv[1])
    if not rows:
        sys.exit("no options found in --help output")
    sys.stdout.write(text)
