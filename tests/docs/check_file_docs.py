#!/usr/bin/env python3
"""Every public header under include/strata opens with its Doxygen file comment (`/// \\file`
and at least one line saying what the header is for), so the API reference documents each
header and not only the symbols that happen to carry `///` comments.

Usage: check_file_docs.py <repo root>. Exit 1 lists the headers without one."""
from __future__ import annotations

import sys
from pathlib import Path

root = Path(sys.argv[1] if len(sys.argv) > 1 else ".") / "include" / "strata"
bad = []
headers = sorted(p for p in root.rglob("*") if p.suffix in (".hpp", ".cuh", ".h"))
for p in headers:
    lines = p.read_text().splitlines()
    if len(lines) < 2 or lines[0] != "/// \\file" or len(lines[1].strip("/ ")) == 0:
        bad.append(str(p.relative_to(root.parent.parent)))
if not headers:
    sys.exit(f"no headers under {root}")
if bad:
    print("headers without a `/// \\file` comment and a description on the next line:")
    print("\n".join("  " + b for b in bad))
    sys.exit(1)
print(f"{len(headers)} headers, each with its file comment")
