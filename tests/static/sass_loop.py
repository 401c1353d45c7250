#!/usr/bin/env python3
"""The main loop of a kernel in its SASS, and the instructions one iteration issues.

A flash kernel spends its time in one loop: the one whose body holds the most HMMA. The number
of warp instructions an iteration issues bounds the kernel where the tensor cores do not: an SM
issues at most 4 warp instructions per clock (one per scheduler), so an iteration of I
instructions by each of W warps costs at least I W / 4 clocks, whatever the tensor cores could
do in that time. This is the bound the H200 run of 2026-12-04 showed binding: the forward issued
~2,300 instructions per 128 HMMA (exp2f's subnormal handling and per-score branches) and ran at
0.3x of FlashAttention-2.

`loop_stats` counts a full tile's path through the loop: the fewest instructions from the loop's
head to its back edge, where an inner loop counts once and no jump may skip a region that holds an
HMMA, LDSM, barrier or cp.async (the work every iteration does). A masked tile's extra work
(skipped by a jump that holds none of those) and optional paths are left out. It is a static
count of one path, not a measurement.

Usage: sass_loop.py CUBIN_OR_BINARY [NAME_FILTER ...] (needs cuobjdump, see ptxas_gate.py).
"""

from __future__ import annotations

import re
import subprocess
import sys

_FUNC = re.compile(r"^\s*Function : (\S+)")
_INSN = re.compile(r"^\s*/\*([0-9a-f]{4,})\*/\s+(@!?U?P[T0-9]+\s+)?([A-Z][A-Z0-9_.]*)([^;]*);")
_TARGET = re.compile(r"0x([0-9a-f]+)")
# What every iteration of a flash main loop does: a jump that skips one of these is not the
# full tile's path.
_WORK = ("HMMA", "LDSM", "BAR", "LDGSTS")


def parse(sass: str) -> dict[str, list[tuple[int, bool, str, str]]]:
    """{function: [(address, predicated, opcode, operands)]} of cuobjdump -sass output."""
    funcs: dict[str, list[tuple[int, bool, str, str]]] = {}
    cur = None
    for line in sass.splitlines():
        m = _FUNC.match(line)
        if m:
            cur = funcs.setdefault(m.group(1), [])
            continue
        m = _INSN.match(line)
        if m and cur is not None:
            cur.append((int(m.group(1), 16), bool(m.group(2)), m.group(3), m.group(4)))
    return funcs


def _target(op: str, args: str) -> int | None:
    if not op.startswith("BRA"):
        return None
    m = _TARGET.search(args)
    return int(m.group(1), 16) if m else None


def loop_stats(insns: list[tuple[int, bool, str, str]]) -> dict[str, int]:
    """{"loop_hmma": HMMA in the main loop, "loop_path": instructions of a full tile's path}; zeros
    for a function without a loop that holds an HMMA."""
    best = None
    for addr, _, op, args in insns:
        t = _target(op, args)
        if t is None or t >= addr:
            continue
        body = [i for i in insns if t <= i[0] <= addr]
        hmma = sum(i[2].startswith("HMMA") for i in body)
        if hmma and (best is None or hmma > best[0]):
            best = (hmma, body)
    if best is None:
        return {"loop_hmma": 0, "loop_path": 0}
    hmma, body = best
    n = len(body)
    index = {b[0]: k for k, b in enumerate(body)}
    inf = float("inf")
    cost = [inf] * (n + 1)
    cost[0] = 0
    for k, (addr, pred, op, args) in enumerate(body):
        if cost[k] == inf:
            continue
        nxt = []
        t = _target(op, args)
        forward = t is not None and t > addr and t in index
        if forward:
            j = index[t]
            if not pred or not any(b[2].startswith(_WORK) for b in body[k + 1 : j]):
                nxt.append(j)
        if not (op.startswith("BRA") and not pred and forward):
            nxt.append(k + 1)  # fall through (an inner loop's back edge: once round)
        for j in nxt:
            cost[j] = min(cost[j], cost[k] + 1)
    return {"loop_hmma": hmma, "loop_path": int(cost[n])}


def main() -> int:
    import ptxas_gate

    cuobjdump = ptxas_gate.find_cuobjdump("nvcc")
    if not cuobjdump or len(sys.argv) < 2:
        print(__doc__)
        return 2
    sass = subprocess.run([cuobjdump, "-sass", sys.argv[1]], capture_output=True, text=True, check=True)
    for name, insns in parse(sass.stdout).items():
        if len(sys.argv) > 2 and not any(f in name for f in sys.argv[2:]):
            continue
        s = loop_stats(insns)
        if s["loop_hmma"]:
            print(f"{name}: {s['loop_path']} instructions per iteration, {s['loop_hmma']} HMMA "
                  f"({s['loop_path'] / s['loop_hmma']:.2f} per HMMA)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
