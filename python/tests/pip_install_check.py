#!/usr/bin/env python3
"""Installs strata_torch the way a user does (`pip install ./python`: scikit-build-core runs its
CMake build, which takes Strata's headers from the checkout) into a fresh target directory, then
imports it from there in a clean interpreter and runs attention forward and backward on CPU
tensors (the kernels in the simulator) against float64 PyTorch. Exit status 0 when all of it works.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

SMOKE = r"""
import math, sys, torch
import strata_torch as st
assert st.__file__.startswith(sys.argv[1]), st.__file__
assert st.executors()["sim"].startswith(sys.argv[1]), st.executors()
torch.manual_seed(0)
q, k, v = (torch.randn(2, 20, 2, 64).bfloat16().requires_grad_() for _ in range(3))
out = st.flash_attn_func(q, k, v, causal=True)
out.float().sum().backward()
q64, k64, v64 = (t.detach().double().requires_grad_() for t in (q, k, v))
s = torch.einsum("bqhd,bkhd->bhqk", q64, k64) / 8.0
s = s.masked_fill(torch.ones(20, 20, dtype=torch.bool).triu(1), float("-inf"))
ref = torch.einsum("bhqk,bkhd->bqhd", s.softmax(-1), v64)
ref.sum().backward()
err = (out.double() - ref).abs().max().item()
gerr = max((a.grad.double() - b.grad).abs().max().item() for a, b in ((q, q64), (k, k64), (v, v64)))
assert err < 0.03 and gerr < 0.1, (err, gerr)
print(f"installed strata_torch: out error {err:.2e}, gradient error {gerr:.2e}")
"""


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--source", required=True, help="the python/ directory of a Strata checkout")
    ap.add_argument("--work", required=True)
    args = ap.parse_args()
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    target = work / "site"
    env = dict(os.environ)
    env.pop("STRATA_TORCH_LIB_DIR", None)
    cmd = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--no-deps",
           "--no-build-isolation", "--target", str(target),
           "-Cbuild-dir=" + str(work / "build"),
           "-Ccmake.define.STRATA_TORCH_CUDA=OFF", str(Path(args.source).resolve())]
    print("+", " ".join(cmd), flush=True)
    if subprocess.run(cmd, env=env).returncode != 0:
        print("pip install failed")
        return 1
    env["PYTHONPATH"] = str(target)
    r = subprocess.run([sys.executable, "-c", SMOKE, str(target)], env=env, cwd=work)
    return r.returncode


if __name__ == "__main__":
    sys.exit(main())
