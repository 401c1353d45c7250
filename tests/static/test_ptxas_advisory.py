#!/usr/bin/env python3
"""The ptxas gate's Hopper checks have teeth: on tests/static/advisory_probe it must fail a
setmaxnreg without a register cap (ptxas advisory C7508, an `info` line -Werror lets through) and
a wgmma used without fence and wait (C7519 warpgroup.arrive injected, C7517 warpgroup.wait
injected), and count the Hopper SASS of correct kernels (SYNCS, USETMAXREG, STSM; HGMMA and the
warpgroup fence and wait of a wgmma chain; no HMMA)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path


def main() -> int:
    here = Path(__file__).resolve().parent
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nvcc", required=True)
    ap.add_argument("--scratch", required=True)
    args = ap.parse_args()
    scratch = Path(args.scratch)
    scratch.mkdir(parents=True, exist_ok=True)
    budget = scratch / "advisory_budget.json"
    budget.unlink(missing_ok=True)
    cmd = [sys.executable, str(here / "ptxas_gate.py"), "--nvcc", args.nvcc, "--repo", str(here.parents[1]),
           "--scratch", str(scratch / "cubins"), "--arch", "sm_80", "--arch", "sm_90a",
           "--instantiations", str(here / "advisory_probe"), "--budget", str(budget), "--update"]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True)
    out = res.stdout + res.stderr
    print(out)
    problems = []
    if res.returncode != 1:
        problems.append(f"the gate exited {res.returncode}, expected 1 (a failure)")
    if "setmaxnreg_no_cap.cu [sm_90a]: ptxas advisory C7508" not in out:
        problems.append("the C7508 advisory of setmaxnreg_no_cap.cu was not reported as a failure")
    for code in ("C7519", "C7517"):
        if f"wgmma_unfenced.cu [sm_90a]: ptxas advisory {code}" not in out:
            problems.append(f"the {code} advisory of wgmma_unfenced.cu was not reported as a failure")
    if "wgmma_chain.cu [sm_90a]: ptxas advisory" in out or "hopper_sync_ops.cu [sm_90a]: ptxas advisory" in out:
        problems.append("a correct kernel drew a ptxas advisory")
    if "[sm_80]" in out:
        problems.append("a `// strata-archs: sm_90a` file was compiled for sm_80")
    entries = json.loads(budget.read_text()) if budget.exists() else {}
    sass = (entries.get("strata_probe_hopper_sync_ops") or {}).get("sm_90a", {}).get("sass", {})
    want = {"USETMAXREG": 2, "HMMA": 0}
    for k, v in want.items():
        if sass.get(k, 0) != v:
            problems.append(f"hopper_sync_ops: SASS {k} = {sass.get(k, 0)}, expected {v}")
    for k in ("SYNCS", "STSM"):
        if sass.get(k, 0) < 1:
            problems.append(f"hopper_sync_ops: no {k} counted in its SASS ({sass})")
    chain = (entries.get("strata_probe_wgmma_chain") or {}).get("sm_90a", {}).get("sass", {})
    if chain.get("HGMMA", 0) != 4 or chain.get("HMMA", 0) != 0:
        problems.append(f"wgmma_chain: SASS HGMMA = {chain.get('HGMMA', 0)} (want 4), HMMA = {chain.get('HMMA', 0)} (want 0)")
    for k in ("WARPGROUP.ARRIVE", "WARPGROUP.DEPBAR"):
        if chain.get(k, 0) < 1:
            problems.append(f"wgmma_chain: no {k} counted in its SASS ({chain})")
    for p in problems:
        print(f"FAIL: {p}")
    if not problems:
        print(f"test_ptxas_advisory: ok (hopper_sync_ops SASS: { {k: v for k, v in sass.items() if v} }; "
              f"wgmma_chain SASS: { {k: v for k, v in chain.items() if v} })")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
