#!/usr/bin/env python3
"""The last step of scripts/gpu_check.sh: one table of TFLOP/s per (pass, T, d, causal), Strata's
flash kernels (Google Benchmark JSON of bench_flash_gpu) beside PyTorch SDPA's flash and cuDNN
backends (scripts/sdpa_baseline.py's JSON), with Strata's ratio to each, and the merged rows as
JSON. Every number is a GPU measurement of this run; nothing is modelled here."""

from __future__ import annotations

import argparse
import json
import re
import sys

NAME = re.compile(r"BM_Flash(Forward|Backward)/seqlen:(\d+)/d:(\d+)/causal:(\d)")


def strata_rows(path: str) -> dict:
    with open(path) as f:
        data = json.load(f)
    rows = {}
    for bm in data.get("benchmarks", []):
        m = NAME.match(bm.get("name", ""))
        if not m or bm.get("error_occurred"):
            continue
        key = ("fwd" if m.group(1) == "Forward" else "bwd", int(m.group(2)), int(m.group(3)), m.group(4) == "1")
        rows[key] = bm["FLOP/s"] * 1e-12
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--strata", required=True)
    ap.add_argument("--sdpa", default=None)
    ap.add_argument("--gpu", default="")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    ours = strata_rows(args.strata)
    base = {}
    if args.sdpa:
        try:
            with open(args.sdpa) as f:
                for r in json.load(f):
                    if "tflops" in r:
                        base[(r["impl"], r["pass"], r["seqlen"], r["d"], bool(r["causal"]))] = r["tflops"]
        except (OSError, ValueError) as e:
            print(f"gpu_report: no SDPA baseline ({e})", file=sys.stderr)

    merged = []
    print(f"\nStrata vs PyTorch SDPA, bf16, 16k tokens per batch, hidden 2048, TFLOP/s (FlashAttention's FLOP convention){' on ' + args.gpu if args.gpu else ''}:\n")
    print("| pass | T | d | causal | Strata | SDPA flash | SDPA cuDNN | Strata / flash | Strata / cuDNN |")
    print("|---|---|---|---|---|---|---|---|---|")
    fmt = lambda x: f"{x:.1f}" if x is not None else "-"
    ratio = lambda a, b: f"{a / b:.2f}" if a is not None and b else "-"
    for key in sorted(ours, key=lambda k: (k[0] != "fwd", k[2], k[3], k[1])):
        p, t, d, c = key
        s, fl, cu = ours[key], base.get(("sdpa_flash", p, t, d, c)), base.get(("sdpa_cudnn", p, t, d, c))
        print(f"| {p} | {t} | {d} | {'yes' if c else 'no'} | {fmt(s)} | {fmt(fl)} | {fmt(cu)} | {ratio(s, fl)} | {ratio(s, cu)} |")
        merged.append({"pass": p, "seqlen": t, "d": d, "causal": c, "strata_tflops": s, "sdpa_flash_tflops": fl, "sdpa_cudnn_tflops": cu})
    with open(args.out, "w") as f:
        json.dump({"gpu": args.gpu, "rows": merged}, f, indent=1)
    if not ours:
        print("gpu_report: no Strata benchmark rows", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
