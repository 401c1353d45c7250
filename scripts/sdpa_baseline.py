#!/usr/bin/env python3
"""PyTorch's scaled_dot_product_attention as the baseline of Strata's flash benchmarks: the flash
and cuDNN backends, bf16, forward and backward, at FlashAttention's benchmark shape (16k tokens
per batch, hidden 2048: batch = 16384 / T, heads = 2048 / d, MHA), the shapes bench_flash_gpu
runs. Each iteration is timed with CUDA events after overwriting a buffer of twice the L2 size,
as bench_flash_gpu does; the median over the iterations is reported. FLOPs by FlashAttention's
convention (4 B T^2 H d forward, 2.5x backward, halved when causal).

With --decode, also the decode step bench_decode_gpu runs (one new token per sequence, 32 query
heads over 8 KV heads, d = 128, batch x context): SDPA over a contiguous cache of the 8 KV heads
with enable_gqa (no copy of K and V expanded to 32 heads); GB/s counts the bytes Strata's step
must move (the K and V cache once, Q and O), whatever a backend reads.

Writes a JSON list of {impl, pass, seqlen, d, causal, ms, tflops} (or {..., error}), decode rows
as {impl, pass: "decode", batch, context, ms, gbps}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys


def flops(b: int, t: int, h: int, d: int, causal: bool, backward: bool) -> float:
    f = 4.0 * b * t * t * h * d / (2 if causal else 1)
    return f * 2.5 if backward else f


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seqlens", default="1024,2048,4096,8192,16384")
    ap.add_argument("--dims", default="64,96,128")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--decode", default="", help="decode shapes batch:context,... (bench_decode_gpu's)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    if not torch.cuda.is_available():
        print("sdpa_baseline: no CUDA device", file=sys.stderr)
        return 2
    dev = torch.device("cuda")
    l2 = getattr(torch.cuda.get_device_properties(dev), "L2_cache_size", 64 << 20)
    flush = torch.empty(2 * l2, dtype=torch.uint8, device=dev)
    backends = {"sdpa_flash": SDPBackend.FLASH_ATTENTION, "sdpa_cudnn": SDPBackend.CUDNN_ATTENTION}

    def timed(fn) -> float:
        times = []
        for i in range(args.iters + 3):
            flush.fill_(i & 0xFF)
            start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            stop.record()
            stop.synchronize()
            if i >= 3:  # warm-up
                times.append(start.elapsed_time(stop))
        return statistics.median(times)

    rows = []
    for t in (int(x) for x in args.seqlens.split(",") if x):  # --seqlens "": decode rows only
        for d in map(int, args.dims.split(",")):
            b, h = max(1, 16384 // t), 2048 // d
            for causal in (False, True):
                q, k, v = (torch.randn(b, h, t, d, device=dev, dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
                dout = torch.randn(b, h, t, d, device=dev, dtype=torch.bfloat16)
                for impl, backend in backends.items():
                    base = {"impl": impl, "seqlen": t, "d": d, "causal": causal}
                    try:
                        with sdpa_kernel(backend):
                            ms = timed(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal))
                            rows.append({**base, "pass": "fwd", "ms": ms, "tflops": flops(b, t, h, d, causal, False) / ms * 1e-9})
                            out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
                            ms = timed(lambda: torch.autograd.grad(out, (q, k, v), dout, retain_graph=True))
                            rows.append({**base, "pass": "bwd", "ms": ms, "tflops": flops(b, t, h, d, causal, True) / ms * 1e-9})
                            del out
                    except Exception as e:  # a backend that does not take this shape
                        rows.append({**base, "pass": "fwd", "error": str(e).splitlines()[0][:200]})
                del q, k, v, dout
                torch.cuda.empty_cache()
    for shape in filter(None, args.decode.split(",")):
        b, ctx = map(int, shape.split(":"))
        h, hk, d = 32, 8, 128  # bench_decode.cpp's kH, kHk, kD
        q = torch.randn(b, h, 1, d, device=dev, dtype=torch.bfloat16)
        k, v = (torch.randn(b, hk, ctx, d, device=dev, dtype=torch.bfloat16) for _ in range(2))
        nbytes = 2.0 * (2 * b * hk * ctx * d + 2 * b * h * d)
        for impl, backend in {**backends, "sdpa_efficient": SDPBackend.EFFICIENT_ATTENTION}.items():
            base = {"impl": impl, "pass": "decode", "batch": b, "context": ctx}
            try:
                with sdpa_kernel(backend):
                    ms = timed(lambda: F.scaled_dot_product_attention(q, k, v, enable_gqa=True))
                rows.append({**base, "ms": ms, "gbps": nbytes / ms * 1e-6})
            except Exception as e:
                rows.append({**base, "error": str(e).splitlines()[0][:200]})
        del q, k, v
        torch.cuda.empty_cache()
    with open(args.out, "w") as f:
        json.dump(rows, f, indent=1)
    print(f"sdpa_baseline: {len(rows)} rows -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
