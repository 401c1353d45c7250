#!/usr/bin/env python3
"""The nvcc result cache's key (nvcc_cache.py): an edit under examples/python/ (never read by
nvcc) keeps it, an edit of any other file in the hashed trees changes it. Exit status 0 when
both hold."""
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import nvcc_cache  # noqa: E402


def key(repo: Path) -> str:
    nvcc_cache._tree_digest.cache_clear()
    return nvcc_cache._key(["nvcc", "-c", str(repo / "examples" / "engine" / "a.cu")], [], repo)


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp)
        for rel, text in (("include/x.hpp", "a"), ("examples/engine/a.cu", "b"),
                          ("examples/python/train.py", "c")):
            (repo / rel).parent.mkdir(parents=True, exist_ok=True)
            (repo / rel).write_text(text)
        k0 = key(repo)
        (repo / "examples/python/train.py").write_text("edited")
        k1 = key(repo)
        (repo / "examples/engine/a.cu").write_text("edited")
        k2 = key(repo)
        (repo / "include/x.hpp").write_text("edited")
        k3 = key(repo)
    ok = k0 == k1 and k1 != k2 and k2 != k3
    print("nvcc cache key: python edit kept it, C++ edits changed it" if ok else
          f"nvcc cache key FAILED: {k0 == k1} {k1 != k2} {k2 != k3}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
