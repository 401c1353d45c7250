#!/usr/bin/env python3
"""Mixed-executor test (issue: one program holding a simulator build and an nvcc build of Strata).

Builds, with the compilers directly:
  sim.o     sim_part.cpp by the host compiler (Strata's simulator), -O0 so that every inline
            function it uses is emitted out of line
  gpu.o     gpu_part.cu by nvcc (sm_80), host code at -O0
  main.o, mixed_common.o, dl_main.o (executor-neutral)
then checks:
  1. lint: executor conditionals (STRATA_SIM, __CUDACC__, STRATA_HAS_MMA_SM80) appear only in the
     headers whose entities are all executor-specific or simulator-only;
  2. one executable, linked sim-first and nvcc-first: the simulator half runs the d = 128 forward
     (52,224 bytes of shared memory) and a user kernel from a shared header, checked against fp64;
     the nvcc half returns its CUDA error (no device) or, on a GPU, the same results;
  3. two shared objects loaded with RTLD_GLOBAL, in both orders: the same;
  4. symbol audit: every symbol both objects define (the linker keeps one of them) is executor-
     neutral, and its code in either object refers to nothing executor-specific (no sim_v1 /
     cuda_v1 entity, no strata::sim, no CUDA runtime or kernel stub).
Exit status 0 when all pass.
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
CONDITIONAL = re.compile(r"^\s*#\s*(if|ifdef|ifndef|elif)\b.*\b(STRATA_SIM|__CUDACC__|STRATA_HAS_MMA_SM80)\b")
# Headers where every entity is executor-specific (inside STRATA_EXECUTOR_BEGIN/END), simulator-
# only, or the configuration itself.
CONDITIONAL_ALLOWED = ("strata/config.hpp", "strata/strata.cuh", "strata/launch.hpp", "strata/arch/",
                       "strata/sim/")
EXECUTOR_REF = re.compile(r"\bsim_v1\b|\bcuda_v1\b|\bstrata::sim::|^cuda[A-Z]|^__cuda|__device_stub|"
                          r"__fatbinwrap|^__nv_|cudaLaunch")


def sh(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd, text=True, capture_output=True, **kw)


def must(cmd: list[str], quiet: bool = False) -> str:
    r = subprocess.run(cmd, text=True, capture_output=True) if quiet else sh(cmd)
    if r.returncode != 0:
        print(r.stdout + r.stderr)
        raise SystemExit(f"command failed ({r.returncode})")
    return r.stdout


def lint(include: Path) -> list[str]:
    bad = []
    for f in sorted(include.rglob("*")):
        if not f.is_file() or f.suffix not in (".hpp", ".cuh", ".h"):
            continue
        rel = f.relative_to(include).as_posix()
        if rel.startswith(CONDITIONAL_ALLOWED):
            continue
        for n, line in enumerate(f.read_text().splitlines(), 1):
            if CONDITIONAL.search(line):
                bad.append(f"{rel}:{n}: executor conditional outside the executor headers: {line.strip()}")
    return bad


def demangle(names: list[str]) -> dict[str, str]:
    if not names:
        return {}
    out = must(["c++filt"] + names, quiet=True).splitlines() if len(names) < 2000 else []
    return dict(zip(names, out)) if len(out) == len(names) else {n: n for n in names}


def defined(obj: Path) -> set[str]:
    """Symbols the object defines with external linkage (what another object's copy can replace)."""
    syms = set()
    for line in must(["nm", "--defined-only", "-P", str(obj)], quiet=True).splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[1] in "TWVDBRu":
            syms.add(parts[0])
    return syms


def relocations(obj: Path) -> dict[str, list[str]]:
    """Relocation targets per section (`.text.<symbol>` for inline functions and templates)."""
    rel: dict[str, list[str]] = {}
    cur = None
    head = re.compile(r"^Relocation section '\.rela(\S+)'")
    for line in must(["readelf", "-rW", str(obj)], quiet=True).splitlines():
        m = head.match(line)
        if m:
            cur = rel.setdefault(m.group(1), [])
            continue
        parts = line.split()
        if cur is not None and len(parts) >= 5 and re.fullmatch(r"[0-9a-f]{16}", parts[0]):
            cur.append(parts[4])
    return rel


def audit(sim_o: Path, gpu_o: Path) -> tuple[list[str], int]:
    shared = sorted((defined(sim_o) & defined(gpu_o)) - {"main"})
    names = demangle(shared)
    problems = []
    rels = {o: relocations(o) for o in (sim_o, gpu_o)}
    targets = set()
    for o in rels.values():
        for ts in o.values():
            targets.update(ts)
    tnames = demangle(sorted(targets))
    for s in shared:
        if EXECUTOR_REF.search(names[s]):
            problems.append(f"{names[s]}: an executor entity defined by both objects")
            continue
        for o, r in rels.items():
            for section in (f".text.{s}", f".data.rel.ro.local.{s}", f".data.rel.{s}"):
                for t in r.get(section, []):
                    if EXECUTOR_REF.search(tnames.get(t, t)):
                        problems.append(f"{names[s]} (neutral, in {o.name}) refers to "
                                        f"{tnames.get(t, t)}")
    return problems, len(shared)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nvcc", required=True)
    ap.add_argument("--cxx", required=True)
    ap.add_argument("--repo", required=True, type=Path)
    ap.add_argument("--work", required=True, type=Path)
    ap.add_argument("--cuda-include", required=True)
    ap.add_argument("--cuda-libdir", required=True)
    ap.add_argument("--boost-context", required=True, help="the Boost.Context library file")
    ap.add_argument("--arch", default="sm_80")
    a = ap.parse_args()
    inc = a.repo / "include"
    w = a.work
    w.mkdir(parents=True, exist_ok=True)
    failures = []

    bad = lint(inc)
    for b in bad:
        print(b)
    if bad:
        failures.append("lint")

    cxx = [a.cxx, "-std=c++20", "-O0", "-fPIC", f"-I{inc}", f"-I{a.cuda_include}", "-c"]
    sim_flags = ["-Wno-unknown-pragmas", "-fstack-clash-protection"]
    must(cxx + sim_flags + [str(HERE / "sim_part.cpp"), "-o", str(w / "sim.o")])
    for src in ("mixed_common", "main", "dl_main"):
        must(cxx + [str(HERE / f"{src}.cpp"), "-o", str(w / f"{src}.o")])
    must([a.nvcc, "-std=c++20", "-O0", f"-arch={a.arch}", "-Xcompiler", "-fPIC", f"-I{inc}", "-c",
          str(HERE / "gpu_part.cu"), "-o", str(w / "gpu.o")])

    cuda = [f"-L{a.cuda_libdir}", "-lcudart_static", "-ldl", "-lrt", "-lpthread"]
    sim_libs = [a.boost_context, "-lpthread"]
    common = [str(w / "mixed_common.o")]
    programs = {
        "exe_sim_first": [str(w / "main.o")] + common + [str(w / "sim.o"), str(w / "gpu.o")],
        "exe_gpu_first": [str(w / "main.o")] + common + [str(w / "gpu.o"), str(w / "sim.o")],
    }
    for exe, objs in programs.items():
        must([a.cxx, "-o", str(w / exe)] + objs + sim_libs + cuda)
    must([a.cxx, "-shared", "-o", str(w / "libmixed_sim.so"), str(w / "sim.o")] + sim_libs)
    must([a.cxx, "-shared", "-o", str(w / "libmixed_gpu.so"), str(w / "gpu.o")] + cuda)
    must([a.cxx, "-o", str(w / "dl_main"), str(w / "dl_main.o")] + common + ["-ldl"])

    runs = {
        "one executable, simulator object first": [str(w / "exe_sim_first")],
        "one executable, nvcc object first": [str(w / "exe_gpu_first")],
        "shared objects, nvcc first (RTLD_GLOBAL)": [str(w / "dl_main"), str(w / "libmixed_gpu.so"),
                                                     str(w / "libmixed_sim.so")],
        "shared objects, simulator first (RTLD_GLOBAL)": [str(w / "dl_main"),
                                                          str(w / "libmixed_sim.so"),
                                                          str(w / "libmixed_gpu.so")],
    }
    for what, cmd in runs.items():
        print(f"== {what}")
        r = sh(cmd, timeout=600)
        print(r.stdout + r.stderr)
        if r.returncode != 0:
            failures.append(what)

    problems, n = audit(w / "sim.o", w / "gpu.o")
    print(f"== symbol audit: {n} symbols defined by both objects")
    for p in problems:
        print("  " + p)
    if problems:
        failures.append("symbol audit")

    checks = 2 + len(runs)
    print(f"{checks - len(failures)} passed, {len(failures)} failed")
    if failures:
        print("failed: " + "; ".join(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
