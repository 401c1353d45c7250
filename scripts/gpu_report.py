#!/usr/bin/env python3
"""The last step of scripts/gpu_check.sh: a table of TFLOP/s per (pass, T, d, causal), Strata's
flash kernels (Google Benchmark JSON of bench_flash_gpu; backward in the deterministic default
and in the fast mode) beside PyTorch SDPA's flash and cuDNN backends (scripts/sdpa_baseline.py's
JSON), with Strata's ratio to each; a table of the fused variants' time over vanilla attention's
at the same shape (bench_variants_gpu); the decode step's time and bandwidth (bench_decode_gpu's
paged kernel beside SDPA over a contiguous cache); the merged rows as JSON. Every number is a GPU
measurement of this run; nothing is modelled here."""

from __future__ import annotations

import argparse
import json
import re
import sys

NAME = re.compile(r"BM_Flash(Forward|BackwardFast|Backward)/seqlen:(\d+)/d:(\d+)/causal:(\d)")
PASS = {"Forward": "fwd", "Backward": "bwd", "BackwardFast": "bwd_fast"}
VARIANT = re.compile(r"BM_Variant(Forward|Backward)/method:(\d+)/seqlen:(\d+)/d:(\d+)")
DECODE = re.compile(r"BM_PagedDecode/batch:(\d+)/context:(\d+)")
# Peak HBM bandwidth by card (the vendors' data sheets), for the decode table's % column.
HBM_BYTES_PER_S = {"H200": 4.8e12, "H100": 3.35e12, "A100": 2.039e12}


def decode_min_bytes(b: int, ctx: int, h: int = 32, hk: int = 8, d: int = 128) -> float:
    """The bytes a decode step cannot avoid (bench_decode.cpp's shape): the K and V cache once,
    Q read and O written, bf16. The same count for Strata and the baselines."""
    return 2.0 * (2 * b * hk * ctx * d + 2 * b * h * d)


def benchmarks(path: str, pattern: re.Pattern):
    """(match, benchmark) of each run in a Google Benchmark JSON file whose name matches; a run
    that failed is reported on stderr and left out."""
    with open(path) as f:
        data = json.load(f)
    for bm in data.get("benchmarks", []):
        m = pattern.match(bm.get("name", ""))
        if not m:
            continue
        if bm.get("error_occurred"):
            print(f"gpu_report: {bm['name']}: {bm.get('error_message', 'error')}", file=sys.stderr)
            continue
        yield m, bm


def strata_rows(path: str) -> dict:
    return {(PASS[m.group(1)], int(m.group(2)), int(m.group(3)), m.group(4) == "1"): bm["FLOP/s"] * 1e-12
            for m, bm in benchmarks(path, NAME)}


def variant_rows(path: str) -> list:
    """(pass, T, d, method name, TFLOP/s by vanilla's FLOPs, ms per layer call)."""
    return [("fwd" if m.group(1) == "Forward" else "bwd", int(m.group(3)), int(m.group(4)),
             bm.get("label", m.group(2)), bm["FLOP/s"] * 1e-12, bm["real_time"])
            for m, bm in benchmarks(path, VARIANT)]


def print_variants(rows: list) -> list:
    vanilla = {(p, t, d): r for p, t, d, name, r, _ in rows if name == "vanilla"}
    out = []
    print("\nFused variants beside vanilla attention, bf16, H = 16, 16k tokens per batch, causal; "
          "TFLOP/s by vanilla attention's FLOPs, so that time / vanilla = vanilla's rate / the method's:\n")
    print("| pass | T | d | method | ms | TFLOP/s | time / vanilla |")
    print("|---|---|---|---|---|---|---|")
    for p, t, d, name, r, ms in sorted(rows, key=lambda x: (x[0] != "fwd", x[2], x[1])):
        v = vanilla.get((p, t, d))
        ratio = v / r if v and r else None
        print(f"| {p} | {t} | {d} | {name} | {ms:.3f} | {r:.1f} | {f'{ratio:.3f}' if ratio else '-'} |")
        out.append({"pass": p, "seqlen": t, "d": d, "method": name, "ms": ms, "tflops": r, "time_over_vanilla": ratio})
    return out


def decode_rows(path: str) -> dict:
    """(batch, context) -> microseconds per step of Strata's paged decode."""
    unit = {"ns": 1e-3, "us": 1.0, "ms": 1e3}
    return {(int(m.group(1)), int(m.group(2))): bm["real_time"] * unit.get(bm.get("time_unit", "us"), 1.0)
            for m, bm in benchmarks(path, DECODE)}


def print_decode(ours: dict, sdpa: list, gpu: str) -> list:
    peak = next((v for k, v in HBM_BYTES_PER_S.items() if k in gpu), None)
    base = {(r["impl"], r["batch"], r["context"]): r["ms"] * 1e3 for r in sdpa if r.get("pass") == "decode" and "ms" in r}
    impls = sorted({k[0] for k in base})
    print("\nDecode step (one token per sequence, 32 query heads over 8 KV heads, d = 128, bf16): "
          "microseconds; GB/s by the bytes the step must move (cache once, Q, O); Strata reads a paged "
          "cache (16-token pages, shuffled block table), SDPA a contiguous one:\n")
    head = ["batch", "context", "Strata us", "Strata GB/s", "% of HBM peak"] + [f"{i} us" for i in impls]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    out = []
    for (b, ctx), us in sorted(ours.items()):
        gbps = decode_min_bytes(b, ctx) / us * 1e-3
        pct = f"{gbps * 1e9 / peak * 100:.0f}" if peak else "-"
        cells = [str(b), str(ctx), f"{us:.1f}", f"{gbps:.0f}", pct]
        cells += [f"{base[(i, b, ctx)]:.1f}" if (i, b, ctx) in base else "-" for i in impls]
        print("| " + " | ".join(cells) + " |")
        out.append({"batch": b, "context": ctx, "strata_us": us, "strata_gbps": gbps,
                    **{f"{i}_us": base.get((i, b, ctx)) for i in impls}})
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--strata", default=None, help="bench_flash_gpu's JSON")
    ap.add_argument("--sdpa", default=None)
    ap.add_argument("--variants", default=None)
    ap.add_argument("--decode", default=None, help="bench_decode_gpu's JSON")
    ap.add_argument("--gpu", default="")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    ours = strata_rows(args.strata) if args.strata else {}
    base = {}
    sdpa = []
    if args.sdpa:
        try:
            with open(args.sdpa) as f:
                sdpa = json.load(f)
                for r in sdpa:
                    if "tflops" in r and r.get("pass") in ("fwd", "bwd"):
                        base[(r["impl"], r["pass"], r["seqlen"], r["d"], bool(r["causal"]))] = r["tflops"]
        except (OSError, ValueError) as e:
            print(f"gpu_report: no SDPA baseline ({e})", file=sys.stderr)

    merged = []
    print(f"\nStrata vs PyTorch SDPA, bf16, 16k tokens per batch, hidden 2048, TFLOP/s (FlashAttention's FLOP convention){' on ' + args.gpu if args.gpu else ''}:\n")
    print("| pass | T | d | causal | Strata | SDPA flash | SDPA cuDNN | Strata / flash | Strata / cuDNN |")
    print("|---|---|---|---|---|---|---|---|---|")
    fmt = lambda x: f"{x:.1f}" if x is not None else "-"
    ratio = lambda a, b: f"{a / b:.2f}" if a is not None and b else "-"
    for key in sorted(ours, key=lambda k: (list(PASS.values()).index(k[0]), k[2], k[3], k[1])):
        p, t, d, c = key
        bp = "bwd" if p == "bwd_fast" else p  # SDPA's backward beside both of Strata's modes
        s, fl, cu = ours[key], base.get(("sdpa_flash", bp, t, d, c)), base.get(("sdpa_cudnn", bp, t, d, c))
        print(f"| {p} | {t} | {d} | {'yes' if c else 'no'} | {fmt(s)} | {fmt(fl)} | {fmt(cu)} | {ratio(s, fl)} | {ratio(s, cu)} |")
        merged.append({"pass": p, "seqlen": t, "d": d, "causal": c, "strata_tflops": s, "sdpa_flash_tflops": fl, "sdpa_cudnn_tflops": cu})
    variants = []
    if args.variants:
        try:
            variants = print_variants(variant_rows(args.variants))
        except (OSError, ValueError, KeyError) as e:
            print(f"gpu_report: no variant rows ({e})", file=sys.stderr)
    decode = []
    if args.decode:
        try:
            decode = print_decode(decode_rows(args.decode), sdpa, args.gpu)
        except (OSError, ValueError, KeyError) as e:
            print(f"gpu_report: no decode rows ({e})", file=sys.stderr)
    with open(args.out, "w") as f:
        json.dump({"gpu": args.gpu, "rows": merged, "variants": variants, "decode": decode}, f, indent=1)
    if not ours and not decode:
        print("gpu_report: no Strata benchmark rows", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
