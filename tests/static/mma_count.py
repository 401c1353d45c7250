#!/usr/bin/env python3
"""mma inventory: the PTX of every flash kernel holds exactly the analytic number of mma.sync
instructions for its tile configuration (one tile pair of the unrolled mainloop, per warp).

With key tiles of BN = 64 and head dim D, each warp issues per (query tile, key tile):
- forward (key tiles of BN = 32 at D = 128): per m16 tile S = Q K^T (BN/8)(D/16) and
  O += P V (D/8)(BN/16), i.e. BN D / 64, for each of the warp's M_TILES = 2 tiles of 16 rows;
- backward dQ kernel: S and dP = dO V^T (BN/8)(D/16) each, dQ += dS K (D/8)(BN/16), i.e. 1.5 D;
- backward dK/dV kernel (query tiles of BMKV = 128 for D = 64, else 64; 4 warps in a 2 x 2 grid):
  S and dP (BMKV/32)(BN/16)(D/16) each, dV += P^T dO and dK += dS^T Q (BN/32)(D/16)(BMKV/16) each,
  and in the fast mode (template flag true) dQ += dS K (BMKV/32)(D/16)(BN/16).
A count that differs means the compiler duplicated a mainloop (peeling) or a loop was not
unrolled into the register-resident form the kernel was written for.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nvcc_cache
from nvcc_tools import DEFAULT_ARCHS, default_nvcc, scratch_dir

M_TILES = 2  # FlashFwdTraits<D>::kMTiles


def expected_fwd(d: int) -> int:
    bn = 32 if d >= 128 else 64  # FlashFwdTraits<D>::kBlockN
    return M_TILES * ((bn // 8) * (d // 16) + (d // 8) * (bn // 16))


def expected_bwd_dq(d: int) -> int:
    # FlashBwdTraits<D>: the same 2 x 2 warp grid and tiles as the dK/dV kernel.
    bm, bn = (128 if d <= 64 else 64), 64
    s_dp = 2 * ((bm // 32) * (bn // 16)) * (d // 16)  # S and dP: [bm/2, bn/2] warp tiles, k = d
    return s_dp + (bm // 32) * (d // 16) * (bn // 16)  # dQ: [bm/2, d/2], k = bn


def expected_bwd_dkdv(d: int, atomic_dq: bool) -> int:
    # FlashBwdTraits<D>: 4 warps in a 2 x 2 grid over every product; query tiles of BMKV = 128 at
    # D = 64, else 64; key tiles of BNKV = 64.
    bm, bn = (128 if d <= 64 else 64), 64
    s_dp = 2 * ((bm // 32) * (bn // 16)) * (d // 16)  # S and dP: [bm/2, bn/2] warp tiles, k = d
    dv_dk = 2 * ((bn // 32) * (d // 16)) * (bm // 16)  # dV and dK: [bn/2, d/2], k = bm
    dq = (bm // 32) * (d // 16) * (bn // 16) if atomic_dq else 0  # fast mode: [bm/2, d/2], k = bn
    return s_dp + dv_dk + dq


SOURCES = ("flash_fwd.cu", "flash_bwd.cu", "variants_value_residual.cu", "variants_output_gate.cu")  # flash kernels (qk_norm_rope has no mma)
# mangled-name pattern -> analytic count from the head dim
KERNELS = {
    re.compile(r"flash_fwd_kernel\w*?Li(\d+)E"): expected_fwd,
    re.compile(r"flash_bwd_dq_kernel\w*?Li(\d+)E"): expected_bwd_dq,
    re.compile(r"flash_bwd_dkdv_kernel\w*?Li(\d+)E\w*?Lb0E"): lambda d: expected_bwd_dkdv(d, False),
    re.compile(r"flash_bwd_dkdv_kernel\w*?Li(\d+)E\w*?Lb1E"): lambda d: expected_bwd_dkdv(d, True),
}


def entries(ptx: str) -> dict[str, str]:
    """Entry name -> its PTX text (up to the next entry)."""
    starts = [(m.start(), m.group(1)) for m in re.finditer(r"\.entry\s+([\w$]+)\s*\(", ptx)]
    return {name: ptx[s : (starts[i + 1][0] if i + 1 < len(starts) else len(ptx))] for i, (s, name) in enumerate(starts)}


def main() -> int:
    here = Path(__file__).resolve().parent
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nvcc", default=default_nvcc())
    ap.add_argument("--repo", default=str(here.parent.parent))
    ap.add_argument("--scratch", default=None)
    args = ap.parse_args()
    repo = Path(args.repo).resolve()
    failures, checked = [], 0
    with scratch_dir(args.scratch, "strata_mma_count_") as scratch:
        for src, arch in ((repo / "tests" / "static" / "instantiations" / f, a) for f in SOURCES for a in DEFAULT_ARCHS):
            out = scratch / f"{src.stem}.{arch}.ptx"
            cmd = [args.nvcc, "-std=c++20", "-O3", f"-arch={arch}", "-ptx", f"-I{repo / 'include'}", "-o", str(out), str(src)]
            res = nvcc_cache.run(cmd, [out], repo)
            if res.returncode != 0:
                print(res.stdout + res.stderr, file=sys.stderr)
                return 2
            for name, body in entries(out.read_text()).items():
                for pat, expect in KERNELS.items():
                    m = pat.search(name)
                    if not m:
                        continue
                    got, want = body.count("mma.sync"), expect(int(m.group(1)))
                    checked += 1
                    print(f"mma_count: {name} [{arch}]: {got} mma.sync, analytic {want}")
                    if got != want:
                        failures.append(f"{name} [{arch}]: {got} mma.sync in the PTX, analytic {want}")
    for f in failures:
        print(f"FAIL: {f}", file=sys.stderr)
    if checked == 0:
        print("FAIL: no flash kernel found in the PTX", file=sys.stderr)
        return 1
    print(f"mma_count: {checked} kernels: {'FAILED' if failures else 'ok'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
