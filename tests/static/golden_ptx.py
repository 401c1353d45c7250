#!/usr/bin/env python3
"""Golden-PTX test of strata/arch: pins every inline-PTX wrapper's instruction and operand order.

Each tests/static/probes/<stem>.cu defines one tiny extern "C" kernel per arch op variant. This
script compiles it to PTX for every architecture (nvcc -ptx), splits the PTX into functions,
normalizes each body and compares it with tests/static/golden/<stem>.<arch>.ptx.txt.

Normalization (so the text is stable across harmless changes, while a swapped operand shows):
  * comments, blank lines, `.loc`/`.file`/`.pragma`/`.reg` and other debug directives dropped;
  * whitespace collapsed to single spaces;
  * registers renamed per class in order of first appearance within the function
    (`%r12` -> `%r<0>`, `%rd3` -> `%rd<0>`, `%f7` -> `%f<0>`, `%p`, `%rs`, `%fd`, ...);
  * labels renamed the same way (`$L__BB0_2` -> `$L<0>`).

Usage:
  golden_ptx.py [--nvcc NVCC] [--repo ROOT] [--scratch DIR] [--arch sm_80 --arch sm_90a] [--update]
  golden_ptx.py --selftest-mutation [--arch sm_80]   # the test must catch a swapped mma operand

Exit status: 0 all match, 1 mismatch (a unified diff per function is printed), 2 error (nvcc
failed, golden file missing, ...). `--update` rewrites the golden files instead of comparing.

Environment: STRATA_GOLDEN_EXTRA_INCLUDE (os.pathsep-separated directories) is put on the include
path *before* <repo>/include, so a scratch copy of a header can shadow the real one; this is how
the test is shown to fail on a swapped operand without touching include/.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import nvcc_cache
from nvcc_tools import DEFAULT_ARCHS, default_nvcc, scratch_dir

# Function headers: `.visible .entry name(` / `.func (...) name(` / `.weak .func name(`.
_FUNC_RE = re.compile(r"^\s*(?:\.(?:visible|weak|extern)\s+)*\.(entry|func)\s+(?:\([^)]*\)\s*)?([A-Za-z_$][\w$]*)")
# Directives inside a body that carry no instruction semantics (or are register-count noise).
_DROP_DIRECTIVES = re.compile(r"^\.(loc|file|pragma|reg|section|maxntid|reqntid|minnctapersm|maxnreg)\b")
# Virtual-register classes nvcc emits; longest alternatives first so %rd is not read as %r + d.
_REG_RE = re.compile(r"%(rd|rs|rq|fd|hh|r|f|p|h|b)(\d+)\b")
_LABEL_RE = re.compile(r"\$L__[\w$]+")


def nvcc_version(nvcc: str) -> str:
    try:
        out = subprocess.run([nvcc, "--version"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    m = re.search(r"release ([\d.]+), (V[\d.]+)", out)
    return f"{m.group(1)} ({m.group(2)})" if m else "unknown"


def strip_comments(line: str) -> str:
    # PTX comments are // and /* */ (the latter only on one line in nvcc output).
    line = re.sub(r"/\*.*?\*/", "", line)
    i = line.find("//")
    return line[:i] if i >= 0 else line


def split_functions(ptx: str) -> dict[str, list[str]]:
    """Returns {function name: raw body lines} for every .entry/.func definition in `ptx`."""
    funcs: dict[str, list[str]] = {}
    lines = ptx.splitlines()
    i = 0
    while i < len(lines):
        m = _FUNC_RE.match(strip_comments(lines[i]))
        if not m:
            i += 1
            continue
        name = m.group(2)
        # Skip the parameter list up to the opening brace (a declaration ends with ';' instead).
        j = i
        while j < len(lines) and strip_comments(lines[j]).strip() != "{":
            if strip_comments(lines[j]).rstrip().endswith(";"):
                break
            j += 1
        if j >= len(lines) or strip_comments(lines[j]).strip() != "{":
            i = j + 1
            continue
        depth, body, k = 1, [], j + 1
        while k < len(lines) and depth > 0:
            s = strip_comments(lines[k]).strip()
            if s == "{":
                depth += 1
            elif s == "}":
                depth -= 1
            if depth > 0:
                body.append(lines[k])
            k += 1
        if name in funcs:
            raise RuntimeError(f"function {name} defined twice in the PTX")
        funcs[name] = body
        i = k
    return funcs


def normalize(body: list[str]) -> list[str]:
    regs: dict[str, dict[str, int]] = {}
    labels: dict[str, int] = {}

    def reg(m: re.Match) -> str:
        cls = regs.setdefault(m.group(1), {})
        idx = cls.setdefault(m.group(2), len(cls))
        return f"%{m.group(1)}<{idx}>"

    def label(m: re.Match) -> str:
        return f"$L<{labels.setdefault(m.group(0), len(labels))}>"

    out = []
    for raw in body:
        s = " ".join(strip_comments(raw).split())
        if not s or _DROP_DIRECTIVES.match(s):
            continue
        s = _LABEL_RE.sub(label, s)
        s = _REG_RE.sub(reg, s)
        out.append(s)
    return out


def render(funcs: dict[str, list[str]]) -> list[str]:
    lines = []
    for name in sorted(funcs):
        lines.append(f"== {name}")
        lines.extend(funcs[name])
    return lines


def parse_golden(lines: list[str]) -> dict[str, list[str]]:
    funcs: dict[str, list[str]] = {}
    cur = None
    for line in lines:
        if line.startswith("#") or not line.strip():
            continue
        if line.startswith("== "):
            cur = line[3:].strip()
            funcs[cur] = []
        elif cur is None:
            raise ValueError(f"golden line outside a function: {line!r}")
        else:
            funcs[cur].append(line)
    return funcs


_ARCHS_RE = re.compile(r"^//\s*golden-archs:\s*(.+)$", re.M)


def probe_archs(src: Path, archs: list[str]) -> list[str]:
    """The archs of `archs` that the probe file is for: all, or those its `// golden-archs:` line
    names (Hopper-only ops have no sm_80 form)."""
    m = _ARCHS_RE.search(src.read_text())
    return [a for a in archs if not m or a in m.group(1).split()]


def compile_ptx(nvcc: str, src: Path, arch: str, includes: list[str], out: Path) -> str:
    cmd = [nvcc, "-std=c++20", f"-arch={arch}", "-ptx"] + [f"-I{d}" for d in includes] + ["-o", str(out), str(src)]
    res = nvcc_cache.run(cmd, [out], Path(__file__).resolve().parents[2])
    if res.returncode != 0:
        raise RuntimeError(f"nvcc failed ({res.returncode}): {' '.join(cmd)}\n{res.stdout}{res.stderr}")
    return out.read_text()


def run(nvcc: str, repo: Path, archs: list[str], includes: list[str], scratch: Path, update: bool) -> tuple[dict, list, int]:
    """Compiles every probe file for every arch and compares (or, with `update`, rewrites) its
    golden file. Returns ({(probe, arch): [differing functions]}, [errors], number of bodies)."""
    static = repo / "tests" / "static"
    golden_dir = static / "golden"
    version = nvcc_version(nvcc)
    diffs_by_file: dict[tuple[str, str], list[str]] = {}
    errors: list[str] = []
    nfuncs = 0
    probes = sorted((static / "probes").glob("*.cu"))
    if not probes:
        errors.append(f"no probes in {static / 'probes'}")
    for src in probes:
        for arch in probe_archs(src, archs):
            golden = golden_dir / f"{src.stem}.{arch}.ptx.txt"
            rel = golden.relative_to(repo)
            try:
                ptx = compile_ptx(nvcc, src, arch, includes, scratch / f"{src.stem}.{arch}.ptx")
                funcs = {n: normalize(b) for n, b in split_functions(ptx).items()}
            except RuntimeError as e:
                errors.append(str(e))
                continue
            if not funcs:
                errors.append(f"{src.name} [{arch}]: no functions found in the PTX")
                continue
            nfuncs += len(funcs)
            if update:
                golden_dir.mkdir(parents=True, exist_ok=True)
                header = [
                    f"# Golden PTX of tests/static/probes/{src.name} for {arch}: normalized bodies of the probe",
                    f"# kernels (see tests/static/golden_ptx.py). Generated with nvcc {version}.",
                    "# Regenerate: python3 tests/static/golden_ptx.py --update, then review the diff by eye.",
                ]
                golden.write_text("\n".join(header + render(funcs)) + "\n")
                print(f"golden_ptx: wrote {rel} ({len(funcs)} functions)")
                continue
            if not golden.exists():
                errors.append(f"{golden} missing: run golden_ptx.py --update and review it")
                continue
            glines = golden.read_text().splitlines()
            expected = parse_golden(glines)
            gver = next((ln for ln in glines if "Generated with nvcc" in ln), "")
            diffs = []
            for name in sorted(set(expected) | set(funcs)):
                exp, act = expected.get(name), funcs.get(name)
                if exp == act:
                    continue
                diffs.append(name)
                if exp is None:
                    print(f"--- {arch}: {name}: new function, not in {rel}")
                elif act is None:
                    print(f"--- {arch}: {name}: in {rel} but not in the PTX")
                else:
                    print(f"--- {arch}: {name}: PTX differs from {rel}")
                    sys.stdout.writelines(
                        ln + "\n"
                        for ln in difflib.unified_diff(
                            exp, act, fromfile=f"{rel}:{name}", tofile=f"nvcc -arch={arch}:{name}", lineterm=""
                        )
                    )
            if diffs:
                if version not in gver:
                    print(f"note: golden file says {gver.lstrip('# ')!r}; this nvcc is {version}")
                diffs_by_file[(src.name, arch)] = diffs
            else:
                print(f"golden_ptx: {src.name} [{arch}]: {len(funcs)} functions match")
    return diffs_by_file, errors, nfuncs


# The mutation self-test: swap the A operands 1 and 2 of the bf16 mma in a scratch copy of
# mma.hpp that shadows the real one; the comparison must then flag exactly this probe.
_MUTANT_FROM = '"r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3])'
_MUTANT_TO = '"r"(a[0]), "r"(a[2]), "r"(a[1]), "r"(a[3])'
_MUTANT_PROBE = "probe_mma_m16n8k16_bf16"


def selftest_mutation(nvcc: str, repo: Path, archs: list[str], scratch: Path) -> int:
    real = repo / "include" / "strata" / "arch" / "mma.hpp"
    text = real.read_text()
    if _MUTANT_FROM not in text:
        print(f"ERROR: mutation self-test: pattern {_MUTANT_FROM!r} not found in {real}; update golden_ptx.py",
              file=sys.stderr)  # fmt: skip
        return 2
    i = text.index(_MUTANT_FROM)
    mutant_dir = scratch / "mutant"
    (mutant_dir / "strata" / "arch").mkdir(parents=True, exist_ok=True)
    (mutant_dir / "strata" / "arch" / "mma.hpp").write_text(text[:i] + _MUTANT_TO + text[i + len(_MUTANT_FROM) :])
    print(f"golden_ptx: mutation self-test: {real.name} with a[1]/a[2] swapped in the first mma (shadowed)")
    diffs, errors, _ = run(nvcc, repo, archs, [str(mutant_dir), str(repo / "include")], scratch, update=False)
    for e in errors:
        print(f"ERROR: {e}", file=sys.stderr)
    if errors:
        return 2
    bad = [f"{p} [{a}]: {d}" for (p, a), d in diffs.items() if d != [_MUTANT_PROBE]]
    missed = [a for a in archs if not any(k[1] == a for k in diffs)]
    if bad or missed:
        for b in bad:
            print(f"FAIL: mutation self-test: unexpected differing functions {b}")
        for a in missed:
            print(f"FAIL: mutation self-test: the swapped operands went unnoticed on {a}")
        return 1
    print(f"golden_ptx: mutation self-test passed: the swap shows in {_MUTANT_PROBE} on {', '.join(archs)}")
    return 0


def main() -> int:
    here = Path(__file__).resolve().parent
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nvcc", default=default_nvcc())
    ap.add_argument("--repo", default=str(here.parent.parent), help="repository root (has include/)")
    ap.add_argument("--scratch", default=None, help="directory for the PTX (default: a temp dir)")
    ap.add_argument("--arch", action="append", help="architectures (default: sm_80 sm_90a)")
    ap.add_argument("--update", action="store_true", help="rewrite the golden files")
    ap.add_argument(
        "--selftest-mutation",
        action="store_true",
        help="prove the test has teeth: a shadowed mma.hpp with swapped operands must be reported",
    )
    args = ap.parse_args()

    repo = Path(args.repo).resolve()
    archs = args.arch or list(DEFAULT_ARCHS)
    t0 = time.monotonic()
    with scratch_dir(args.scratch, "strata_golden_") as scratch:
        if args.selftest_mutation:
            if args.update:
                ap.error("--selftest-mutation and --update exclude each other")
            rc = selftest_mutation(args.nvcc, repo, archs, scratch)
            print(f"golden_ptx: {time.monotonic() - t0:.1f} s")
            return rc
        extra = [d for d in os.environ.get("STRATA_GOLDEN_EXTRA_INCLUDE", "").split(os.pathsep) if d]
        if extra:
            print(f"golden_ptx: extra include dirs first: {extra}")
        includes = extra + [str(repo / "include")]
        diffs, errors, nfuncs = run(args.nvcc, repo, archs, includes, scratch, args.update)
    for e in errors:
        print(f"ERROR: {e}", file=sys.stderr)
    for (probe, arch), names in diffs.items():
        print(f"FAIL: {probe} [{arch}]: {len(names)} function(s) differ: {', '.join(names)}")
    print(f"golden_ptx: {nfuncs} function bodies over {len(archs)} arch(s) in {time.monotonic() - t0:.1f} s")
    if errors:
        return 2
    if diffs:
        print("If the change is intended, run golden_ptx.py --update and review the new golden text.")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
