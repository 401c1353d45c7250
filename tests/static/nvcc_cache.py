"""A result cache for the static gates' nvcc runs (-cubin, -ptx and compile-and-link, which ccache
does not cache: it takes only -c).

nvcc is the slowest part of CI on two cores, and CI runs on a fresh clone right after a session
that has just run the same gates on the same sources. A run is looked up by a key that covers
everything it can depend on:

  * the command, with the repository's path replaced by a placeholder (a clone in another folder
    hits the same entries) and the output paths left out;
  * every file under the repository's include/, tests/, examples/ and benchmarks/ trees (path and
    content; but examples/python/, which no nvcc run reads), every file under each -I directory
    outside the repository, and every source named on the command line;
  * `nvcc --version` and the host compiler's `--version` (the toolkit's and the C++ library's
    headers change only with them).

So any edit of a header or a test invalidates every entry; there is no dependency scan to get
wrong. An entry holds the exit status, stdout, stderr and the output files; a hit restores the
files and replays the text. Entries live in $STRATA_NVCC_CACHE (default ~/.cache/strata/nvcc);
STRATA_NVCC_CACHE=off disables the cache. The oldest entries are dropped past 4 GiB.

As a program it wraps one command (the compile-and-link tests of tests/static/CMakeLists.txt):
  nvcc_cache.py --repo ROOT --output FILE [--output FILE ...] -- nvcc ARGS...
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO_TREES = ("include", "tests", "examples", "benchmarks")
MAX_BYTES = 4 << 30


def cache_root() -> Path | None:
    setting = os.environ.get("STRATA_NVCC_CACHE", "")
    if setting.lower() in ("off", "0", "no", "false"):
        return None
    return Path(setting) if setting else Path.home() / ".cache" / "strata" / "nvcc"


@functools.lru_cache(maxsize=None)
def _tool_version(tool: str) -> str:
    try:
        return subprocess.run([tool, "--version"], capture_output=True, text=True).stdout
    except OSError:
        return f"{tool}: not found"


# Folders of the repository's trees that no nvcc run reads (the PyTorch examples): editing them
# keeps the cache warm.
NEVER_COMPILED = {"examples": ("python",)}


def _never_compiled(base: Path, rel: Path) -> bool:
    prefix = NEVER_COMPILED.get(base.name)
    return prefix is not None and rel.parts[:len(prefix)] == prefix


@functools.lru_cache(maxsize=None)
def _tree_digest(root: str) -> str:
    """Hash of every file's relative path and content under root (sorted, so order-independent)."""
    h = hashlib.sha256()
    base = Path(root)
    if base.is_file():
        h.update(base.read_bytes())
        return h.hexdigest()
    files = sorted(p for p in base.rglob("*") if p.is_file() and "__pycache__" not in p.parts
                   and not _never_compiled(base, p.relative_to(base)))
    for p in files:
        h.update(str(p.relative_to(base)).encode() + b"\0")
        h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def _key(cmd: list[str], outputs: list[Path], repo: Path) -> str:
    repo_s = str(repo)
    outs = {str(o) for o in outputs}
    h = hashlib.sha256()
    h.update(_tool_version(cmd[0]).encode())
    h.update(_tool_version(os.environ.get("CXX", "g++")).encode())
    for arg in cmd[1:]:
        h.update(b"<out>" if arg in outs else arg.replace(repo_s, "<repo>").encode())
        h.update(b"\0")
    for tree in REPO_TREES:
        if (repo / tree).exists():
            h.update(tree.encode() + _tree_digest(str(repo / tree)).encode())
    for arg in cmd[1:]:
        path = Path(arg[2:]) if arg.startswith("-I") else Path(arg)
        if arg in outs or not path.exists():
            continue
        if any(path.resolve().is_relative_to(repo / tree) for tree in REPO_TREES):
            continue  # hashed above
        if arg.startswith("-I") or path.is_file():
            h.update(str(path).encode() + _tree_digest(str(path.resolve())).encode())
    return h.hexdigest()


def _prune(root: Path) -> None:
    entries = [(p.stat().st_mtime, p) for p in root.iterdir() if p.is_dir()]
    total = sum(f.stat().st_size for _, p in entries for f in p.iterdir())
    for _, p in sorted(entries):
        if total <= MAX_BYTES:
            break
        total -= sum(f.stat().st_size for f in p.iterdir())
        shutil.rmtree(p, ignore_errors=True)


def run(cmd: list[str], outputs: list[Path], repo: Path) -> subprocess.CompletedProcess:
    """Runs cmd (text output captured), or replays a cached run of the same inputs."""
    root = cache_root()
    if root is None:
        return subprocess.run(cmd, capture_output=True, text=True)
    entry = root / _key(cmd, outputs, Path(repo).resolve())
    meta = entry / "meta.json"
    if meta.exists():
        info = json.loads(meta.read_text())
        if all((entry / f"out{i}").exists() for i in range(len(outputs))):
            for i, out in enumerate(outputs):
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(entry / f"out{i}", out)  # with the mode: executables stay executable
            os.utime(entry)
            return subprocess.CompletedProcess(cmd, info["rc"], info["stdout"], info["stderr"] + "[nvcc_cache: hit]\n")
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode == 0 and all(o.exists() for o in outputs):
        tmp = root / f".tmp-{os.getpid()}-{time.monotonic_ns()}"
        tmp.mkdir(parents=True, exist_ok=True)
        for i, out in enumerate(outputs):
            shutil.copy(out, tmp / f"out{i}")
        (tmp / "meta.json").write_text(json.dumps({"rc": res.returncode, "stdout": res.stdout, "stderr": res.stderr}))
        try:
            tmp.rename(entry)
        except OSError:  # another run stored the same entry meanwhile
            shutil.rmtree(tmp, ignore_errors=True)
        _prune(root)
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description="run one nvcc command through the static gates' cache")
    ap.add_argument("--repo", required=True)
    ap.add_argument("--output", action="append", default=[], help="a file the command writes")
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        ap.error("no command after --")
    res = run(cmd, [Path(o) for o in args.output], Path(args.repo))
    sys.stdout.write(res.stdout)
    sys.stderr.write(res.stderr)
    return res.returncode


if __name__ == "__main__":
    sys.exit(main())
