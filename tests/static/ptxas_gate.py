#!/usr/bin/env python3
"""ptxas gate: every shipped kernel instantiation compiles for sm_80 and sm_90a without spills or
local memory, and within the register / static shared-memory budget of tests/static/budget.json.

Each tests/static/instantiations/*.cu is compiled once per architecture with
  nvcc -std=c++20 -O3 -gencode=arch=compute_<N>,code=<arch> -cubin
       -Xptxas -v,-warn-spills,-warn-lmem-usage,-Werror -Werror all-warnings
       -I<repo>/include -I<repo>/examples
(sm_90a: compute_90a, the architecture-specific target wgmma and setmaxnreg need), and the
`ptxas info` lines are parsed per kernel. A file whose `// strata-archs:` line names
architectures is compiled for those only (Hopper kernels have no sm_80 form). The gate fails if
  * nvcc fails (a spill or any local memory is a ptxas error through -Werror);
  * ptxas prints a performance advisory (C75xx: "setmaxnreg ignored", "wgmma serialized",
    "warpgroup.arrive injected", ...): `ptxas info` lines that -Werror lets through;
  * a kernel reports a nonzero stack frame or spill (belt and braces beside -Werror);
  * a kernel uses more static shared memory than 99 KB (101376 bytes, the sm_86/sm_89 limit);
  * a kernel is missing from the budget, or exceeds its registers / smem_bytes budget;
  * the budget lists a kernel (for a checked arch) that no instantiation file compiled;
  * the SASS of any kernel (cuobjdump -sass of the cubin) has a local-memory instruction (LDL,
    STL), or its inventory of HMMA, LDSM, LDGSTS and MUFU instructions, or the HMMA of its main
    loop, differs from the budget's; likewise the Hopper inventory (HGMMA, UTMALDG, UTMASTG,
    WARPGROUP.DEPBAR, WARPGROUP.ARRIVE, SYNCS, USETMAXREG, STSM; absent from an entry = 0);
  * a kernel issues both HGMMA and HMMA (a Hopper kernel fell back to mma.sync somewhere);
  * a full tile's path through a kernel's main loop issues more instructions than its budget
    (sass_loop.py: the bound an SM's 4 issue slots per clock set beside the tensor cores).

The SASS inventory needs cuobjdump: $STRATA_CUOBJDUMP, on PATH, beside nvcc, or from the
nvidia-cuda-cuobjdump wheel that scripts/install_python_deps.sh puts in the test venv.

budget.json: {"<demangled kernel>": {"mangled": "<symbol>", "sm_80": {"registers": R,
"smem_bytes": S, "sass": {"HMMA": h, "LDSM": l, "LDGSTS": g, "MUFU": m, "loop_hmma": lh,
"loop_path": lp, <the nonzero Hopper counts>}}, "sm_90a": {...}}}. Kernels are matched by mangled symbol when the entry has
one (so the demangler in use does not matter), else by demangled name. `--update` rewrites it
with the measured values (exact: budgets are tightened deliberately, and loosened only by a
reviewed --update); hard failures (compile errors, spills, stack, smem limit) still fail.

Environment: STRATA_PTXAS_EXTRA_INCLUDE (os.pathsep-separated directories) is searched before
<repo>/include and <repo>/examples, to measure a patched copy of a header without editing it.

Exit status: 0 pass, 1 gate failure, 2 usage/environment error.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nvcc_cache
import sass_loop
from nvcc_tools import DEFAULT_ARCHS, default_nvcc, scratch_dir
SMEM_LIMIT = 101376  # 99 KB: the largest per-block shared memory of sm_86 / sm_89.

_COMPILING = re.compile(r"ptxas info\s*: Compiling entry function '([^']+)' for '([^']+)'")
_PROPS = re.compile(r"ptxas info\s*: Function properties for (\S+)")
_FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_USED = re.compile(r"ptxas info\s*: Used (\d+) registers")
_SMEM = re.compile(r"(\d+) bytes smem")
_DIAG = re.compile(r"^(ptxas|nvlink|nvcc)\s*(error|warning|fatal)", re.I)


SASS_COUNTED = ("HMMA", "LDSM", "LDGSTS", "MUFU")
# Hopper's asynchronous machinery: wgmma, TMA loads and stores, the wgmma wait and fence, the
# mbarrier unit, register reconfiguration, stmatrix. Counted by full opcode (WARPGROUP.*) or
# base opcode; a budget entry lists only the nonzero ones.
SASS_HOPPER = ("HGMMA", "UTMALDG", "UTMASTG", "WARPGROUP.DEPBAR", "WARPGROUP.ARRIVE", "SYNCS", "USETMAXREG", "STSM")
SASS_EXACT = SASS_COUNTED + ("loop_hmma",) + SASS_HOPPER  # must equal the budget's
SASS_BUDGETS = SASS_EXACT + ("loop_path",)  # loop_path: at most the budget's
SASS_FORBIDDEN = ("LDL", "STL")
_SASS_FUNC = re.compile(r"^\s*Function : (\S+)")
_SASS_INSN = re.compile(r"^\s*/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P[T0-9]+\s+)?([A-Z][A-Z0-9_]*)((?:\.[A-Z0-9_]+)*)")
_ADVISORY = re.compile(r"ptxas info\s*:\s*\((C75\d\d)\)\s*(.*)")
_ARCHS_LINE = re.compile(r"^//\s*strata-archs:\s*(.+)$", re.M)


def gencode(arch: str) -> str:
    """-gencode for a cubin of `arch` (sm_90a -> arch=compute_90a,code=sm_90a)."""
    return f"-gencode=arch=compute_{arch[3:]},code={arch}"


def file_archs(src: Path, archs: list[str]) -> list[str]:
    """The archs of `archs` that an instantiation file is compiled for (its `// strata-archs:`)."""
    m = _ARCHS_LINE.search(src.read_text())
    return [a for a in archs if not m or a in m.group(1).split()]


def sass_key(base: str, mods: str) -> str | None:
    """The inventory key of an opcode, or None if it is not counted."""
    if base == "WARPGROUP":  # WARPGROUP.DEPBAR.LE gsb0, 0x0 -> WARPGROUP.DEPBAR
        full = base + "." + mods.split(".")[1] if mods else base
        return full if full in SASS_HOPPER else None
    if base in SASS_COUNTED or base in SASS_FORBIDDEN or base in SASS_HOPPER:
        return base
    return None


def find_cuobjdump(nvcc: str) -> str | None:
    cands = [os.environ.get("STRATA_CUOBJDUMP"), shutil.which("cuobjdump"), str(Path(nvcc).resolve().parent / "cuobjdump")]
    venv = Path(os.environ.get("STRATA_VENV", Path.home() / ".cache" / "strata-venv"))
    cands += [str(p) for p in sorted(venv.glob("lib/python3*/site-packages/nvidia/cu*/bin/cuobjdump"))]
    for cand in cands:
        if cand and Path(cand).is_file() and os.access(cand, os.X_OK):
            return cand
    return None


def sass_inventory(cuobjdump: str, cubin: Path) -> dict[str, dict[str, int]]:
    """{mangled: {opcode: count}} of the counted and forbidden opcodes of every function."""
    res = subprocess.run([cuobjdump, "-sass", str(cubin)], capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"cuobjdump -sass {cubin} failed: {res.stderr.strip()}")
    keys = SASS_COUNTED + SASS_FORBIDDEN + SASS_HOPPER
    inv: dict[str, dict[str, int]] = {}
    cur = None
    for line in res.stdout.splitlines():
        m = _SASS_FUNC.match(line)
        if m:
            cur = inv.setdefault(m.group(1), {k: 0 for k in keys})
            continue
        m = _SASS_INSN.match(line)
        key = sass_key(m.group(1), m.group(2)) if m else None
        if key and cur is not None:
            cur[key] += 1
    for name, insns in sass_loop.parse(res.stdout).items():
        inv.setdefault(name, {k: 0 for k in keys}).update(sass_loop.loop_stats(insns))
    return inv


def find_demangler(nvcc: str) -> list[str] | None:
    """cu++filt beside nvcc or on PATH, else binutils c++filt (both demangle Itanium C++ names)."""
    for cand in (Path(nvcc).resolve().parent / "cu++filt", shutil.which("cu++filt"), shutil.which("c++filt")):
        if cand and Path(cand).exists():
            return [str(cand)]
    return None


def demangle(names: list[str], tool: list[str] | None) -> dict[str, str]:
    if not tool or not names:
        return {n: n for n in names}
    try:
        res = subprocess.run(tool + names, capture_output=True, text=True, check=True)
        out = res.stdout.splitlines()
        if len(out) == len(names):
            return dict(zip(names, (o.strip() for o in out)))
    except (OSError, subprocess.CalledProcessError):
        pass
    return {n: n for n in names}


def parse_ptxas(text: str, arch: str) -> dict[str, dict]:
    """{mangled: {registers, smem_bytes, stack_frame, spill_stores, spill_loads, entry}}."""
    funcs: dict[str, dict] = {}
    cur = None
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = _COMPILING.search(line)
        if m:
            cur = m.group(1)
            if m.group(2) != arch:
                raise RuntimeError(f"ptxas compiled {cur} for {m.group(2)}, expected {arch}")
            funcs.setdefault(cur, {})["entry"] = True
            continue
        m = _PROPS.search(line)
        if m:
            name = m.group(1)
            info = funcs.setdefault(name, {})
            info.setdefault("entry", False)
            nxt = lines[i + 1] if i + 1 < len(lines) else ""
            f = _FRAME.search(nxt)
            if f:
                info["stack_frame"], info["spill_stores"], info["spill_loads"] = map(int, f.groups())
            continue
        m = _USED.search(line)
        if m and cur is not None:
            info = funcs[cur]
            info["registers"] = int(m.group(1))
            s = _SMEM.search(line)
            info["smem_bytes"] = int(s.group(1)) if s else 0
    return funcs


def extra_includes() -> list[str]:
    """STRATA_PTXAS_EXTRA_INCLUDE: directories searched before the repo's (to try a patched header)."""
    return [d for d in os.environ.get("STRATA_PTXAS_EXTRA_INCLUDE", "").split(os.pathsep) if d]


def compile_one(nvcc: str, src: Path, arch: str, repo: Path, out: Path) -> tuple[int, str, list[str]]:
    cmd = [
        nvcc, "-std=c++20", "-O3", gencode(arch), "-cubin",
        "-Xptxas", "-v,-warn-spills,-warn-lmem-usage,-Werror",
        "-Werror", "all-warnings",
        *(f"-I{d}" for d in extra_includes()),
        f"-I{repo / 'include'}", f"-I{repo / 'examples'}",
        "-o", str(out), str(src),
    ]  # fmt: skip
    res = nvcc_cache.run(cmd, [out], repo)
    return res.returncode, res.stdout + res.stderr, cmd


def main() -> int:
    here = Path(__file__).resolve().parent
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nvcc", default=default_nvcc())
    ap.add_argument("--repo", default=str(here.parent.parent), help="repository root (has include/, examples/)")
    ap.add_argument("--scratch", default=None, help="directory for the cubins (default: a temp dir)")
    ap.add_argument("--arch", action="append", help="architectures (default: sm_80 sm_90a)")
    ap.add_argument("--budget", default=None, help="budget file (default: tests/static/budget.json)")
    ap.add_argument("--update", action="store_true", help="write the measured values to the budget")
    ap.add_argument("--verbose", action="store_true", help="print the full nvcc output")
    ap.add_argument("--instantiations", default=None,
                    help="directory of the .cu files to gate (default: tests/static/instantiations)")
    args = ap.parse_args()

    repo = Path(args.repo).resolve()
    static = repo / "tests" / "static"
    budget_path = Path(args.budget) if args.budget else static / "budget.json"
    archs = args.arch or list(DEFAULT_ARCHS)
    inst_dir = Path(args.instantiations) if args.instantiations else static / "instantiations"
    sources = sorted(inst_dir.glob("*.cu"))
    if not sources:
        print(f"ptxas_gate: no instantiation files in {inst_dir}", file=sys.stderr)
        return 2
    if not shutil.which(args.nvcc) and not Path(args.nvcc).exists():
        print(f"ptxas_gate: nvcc not found: {args.nvcc}", file=sys.stderr)
        return 2

    cuobjdump = find_cuobjdump(args.nvcc)
    if not cuobjdump:
        print("ptxas_gate: cuobjdump not found ($STRATA_CUOBJDUMP, PATH, beside nvcc, or the test venv: "
              "scripts/install_python_deps.sh installs it)", file=sys.stderr)
        return 2

    t0 = time.monotonic()
    failures: list[str] = []
    compiled_ok = True
    # measured[arch][mangled] = info (entries only); helpers = non-entry functions with frames.
    measured: dict[str, dict[str, dict]] = {a: {} for a in archs}
    only_archs: dict[str, list[str]] = {}  # mangled -> the archs its file is compiled for
    everything: list[tuple[str, str, dict]] = []  # (arch, mangled, info) of every function
    with scratch_dir(args.scratch, "strata_ptxas_") as scratch:
        for src in sources:
            src_archs = file_archs(src, archs)
            for arch in src_archs:
                t = time.monotonic()
                cubin = scratch / f"{src.stem}.{arch}.cubin"
                rc, out, cmd = compile_one(args.nvcc, src, arch, repo, cubin)
                dt = time.monotonic() - t
                print(f"ptxas_gate: {src.name} [{arch}] compiled in {dt:.1f} s (exit {rc})")
                diags = [ln for ln in out.splitlines() if _DIAG.match(ln.strip()) or ": error" in ln or ": warning" in ln]
                if args.verbose or (rc != 0 and not diags):
                    print(out)
                for d in diags:
                    print(f"  {d.strip()}")
                if rc != 0:
                    compiled_ok = False
                    failures.append(f"{src.name} [{arch}]: nvcc exited {rc}: {' '.join(cmd)}")
                for m in _ADVISORY.finditer(out):
                    failures.append(f"{src.name} [{arch}]: ptxas advisory {m.group(1)}: {m.group(2).strip()}")
                try:
                    funcs = parse_ptxas(out, arch)
                except RuntimeError as e:
                    failures.append(str(e))
                    continue
                if rc == 0:
                    try:
                        for name, counts in sass_inventory(cuobjdump, cubin).items():
                            funcs.setdefault(name, {"entry": False})["sass"] = counts
                    except RuntimeError as e:
                        failures.append(str(e))
                entries = {n: f for n, f in funcs.items() if f.get("entry")}
                if not entries:
                    failures.append(f"{src.name} [{arch}]: no kernel found in the ptxas output")
                    compiled_ok = False
                for name, info in funcs.items():
                    everything.append((arch, name, info))
                for name, info in entries.items():
                    if name in measured[arch]:
                        failures.append(f"{name} [{arch}]: instantiated in more than one file")
                    info["source"] = src.name
                    measured[arch][name] = info
                    only_archs[name] = src_archs

    tool = find_demangler(args.nvcc)
    names = demangle(sorted({n for _, n, _ in everything}), tool)
    all_mangled = sorted({n for a in archs for n in measured[a]}, key=lambda n: names[n])

    # No stack frame, no spill, in any function (entries and called device functions alike).
    for arch, name, info in everything:
        if info.get("stack_frame", 0) or info.get("spill_stores", 0) or info.get("spill_loads", 0):
            failures.append(
                f"{names[name]} [{arch}]: {info.get('stack_frame', 0)} bytes stack frame, "
                f"{info.get('spill_stores', 0)} bytes spill stores, {info.get('spill_loads', 0)} bytes spill loads"
            )
        local = {k: info.get("sass", {}).get(k, 0) for k in SASS_FORBIDDEN}
        if any(local.values()):
            failures.append(f"{names[name]} [{arch}]: local memory in the SASS: {local}")
        if info.get("entry") and "registers" not in info:
            failures.append(f"{names[name]} [{arch}]: no 'Used N registers' line parsed")
        sass = info.get("sass", {})
        if sass.get("HGMMA", 0) and sass.get("HMMA", 0):
            failures.append(f"{names[name]} [{arch}]: {sass['HMMA']} HMMA beside {sass['HGMMA']} HGMMA "
                            "(a Hopper kernel fell back to mma.sync)")

    budget: dict = {}
    if budget_path.exists():
        try:
            budget = json.loads(budget_path.read_text())
        except json.JSONDecodeError as e:
            print(f"ptxas_gate: {budget_path}: {e}", file=sys.stderr)
            return 2
    by_mangled = {v.get("mangled"): k for k, v in budget.items() if isinstance(v, dict) and v.get("mangled")}

    def budget_key(mangled: str) -> str | None:
        if mangled in by_mangled:
            return by_mangled[mangled]
        return names[mangled] if names[mangled] in budget else None

    # Hard limits that no budget can waive.
    for arch in archs:
        for mangled, info in measured[arch].items():
            if info.get("smem_bytes", 0) > SMEM_LIMIT:
                failures.append(
                    f"{names[mangled]} [{arch}]: {info['smem_bytes']} bytes static smem > {SMEM_LIMIT} (99 KB)"
                )

    # Table and budget comparison.
    rows = []
    notes = []
    used_keys: set[str] = set()
    for mangled in all_mangled:
        key = budget_key(mangled)
        if key:
            used_keys.add(key)
        for arch in only_archs.get(mangled, archs):
            info = measured[arch].get(mangled)
            if info is None:
                failures.append(f"{names[mangled]}: compiled for some architectures but not {arch}")
                continue
            b = (budget.get(key) or {}).get(arch) if key else None
            regs, smem = info.get("registers", -1), info.get("smem_bytes", 0)
            if not args.update:
                if b is None:
                    failures.append(f"{names[mangled]} [{arch}]: missing from {budget_path.name} (run --update)")
                else:
                    if regs > b.get("registers", -1):
                        failures.append(f"{names[mangled]} [{arch}]: {regs} registers > budget {b.get('registers')}")
                    elif regs < b.get("registers", -1):
                        notes.append(f"{names[mangled]} [{arch}]: {regs} registers < budget {b['registers']} (tighten)")
                    want = b.get("sass")
                    got = {k: info.get("sass", {}).get(k, 0) for k in SASS_EXACT}
                    if want is not None:
                        want = {**{k: 0 for k in SASS_HOPPER}, **want}
                    path = info.get("sass", {}).get("loop_path", 0)
                    if want is None or "loop_path" not in want:
                        failures.append(f"{names[mangled]} [{arch}]: no SASS inventory in {budget_path.name} (run --update)")
                    else:
                        if {k: want.get(k) for k in SASS_EXACT} != got:
                            failures.append(f"{names[mangled]} [{arch}]: SASS inventory {got} != budget "
                                            f"{ {k: want.get(k) for k in SASS_EXACT} } (review, then --update)")
                        if path > want["loop_path"]:
                            failures.append(f"{names[mangled]} [{arch}]: main loop issues {path} instructions "
                                            f"per iteration > budget {want['loop_path']}")
                        elif path < want["loop_path"]:
                            notes.append(f"{names[mangled]} [{arch}]: main loop issues {path} instructions "
                                         f"per iteration < budget {want['loop_path']} (tighten)")
                    if smem > b.get("smem_bytes", -1):
                        failures.append(f"{names[mangled]} [{arch}]: {smem} bytes smem > budget {b.get('smem_bytes')}")
                    elif smem < b.get("smem_bytes", -1):
                        notes.append(f"{names[mangled]} [{arch}]: {smem} bytes smem < budget {b['smem_bytes']} (tighten)")
            rb = "-" if b is None else str(b.get("registers"))
            sb = "-" if b is None else str(b.get("smem_bytes"))
            rows.append(
                (
                    names[mangled],
                    arch,
                    f"{regs} / {rb}",
                    f"{smem} / {sb}",
                    f"{info.get('spill_stores', 0)}+{info.get('spill_loads', 0)}",
                    str(info.get("stack_frame", 0)),
                    " ".join(str(info.get("sass", {}).get(k, 0)) for k in SASS_COUNTED),
                    " ".join(str(info.get("sass", {}).get(k, 0)) for k in ("loop_hmma", "loop_path")),
                    " ".join(f"{k}={v}" for k in SASS_HOPPER if (v := info.get("sass", {}).get(k, 0))) or "-",
                )
            )
    if not args.update:
        for key, entry in budget.items():
            if key in used_keys or not isinstance(entry, dict):
                continue
            stale = [a for a in archs if a in entry]
            if stale:
                failures.append(f"{key}: in {budget_path.name} for {', '.join(stale)} but not compiled (stale entry)")

    header = ("kernel", "arch", "regs / budget", "smem / budget", "spill st+ld", "stack", "HMMA LDSM LDGSTS MUFU",
              "loop HMMA / insts", "Hopper SASS")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    fmt = "  ".join(f"{{:{'<' if i < 2 else '>'}{w}}}" for i, w in enumerate(widths))
    print()
    print(fmt.format(*header))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print(fmt.format(*r))
    print()
    if not tool:
        print("note: no cu++filt / c++filt found; kernel names are mangled")

    if args.update:
        if not compiled_ok and not all_mangled:
            print("ptxas_gate: nothing measured; budget not written", file=sys.stderr)
        else:
            new = {k: v for k, v in budget.items() if k not in used_keys}
            # Keep entries only for archs this run did not check.
            new = {k: {a: e for a, e in v.items() if a not in archs and a != "mangled"} for k, v in new.items()}
            new = {k: v for k, v in new.items() if v}
            for mangled in all_mangled:
                key = budget_key(mangled) or names[mangled]
                entry = {"mangled": mangled}
                entry.update({a: e for a, e in (budget.get(key) or {}).items() if a not in archs and a != "mangled"})
                for arch in archs:
                    info = measured[arch].get(mangled)
                    if info is not None:
                        entry[arch] = {
                            "registers": info.get("registers", 0),
                            "smem_bytes": info.get("smem_bytes", 0),
                            "sass": {k: info.get("sass", {}).get(k, 0) for k in SASS_BUDGETS
                                     if k not in SASS_HOPPER or info.get("sass", {}).get(k, 0)},
                        }
                new[names[mangled]] = entry
            budget_path.write_text(json.dumps(dict(sorted(new.items())), indent=2) + "\n")
            print(f"ptxas_gate: wrote {budget_path} ({len(all_mangled)} kernels)")

    for n in notes:
        print(f"note: {n}")
    for f in failures:
        print(f"FAIL: {f}")
    elapsed = time.monotonic() - t0
    nk = len(all_mangled)
    print(f"ptxas_gate: {nk} kernels x {len(archs)} arch(s) in {elapsed:.1f} s: "
          f"{'FAILED (' + str(len(failures)) + ' problems)' if failures else 'ok'}")  # fmt: skip
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
