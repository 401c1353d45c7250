#!/usr/bin/env python3
"""Checks the instantiation-header pattern on object files: the engine's TU (engine.o) defines
no Strata kernel and calls the engine function as undefined; the instantiation TU defines both.
Usage: check_no_kernel.py ENGINE_OBJECT INSTANCES_OBJECT"""
import re
import subprocess
import sys

LINE = re.compile(r"^\s*[0-9a-fA-F]*\s+(\w)\s+(.*)$")  # [address] type name


def symbols(obj: str) -> list[tuple[str, str]]:
    out = subprocess.run(["nm", "-C", obj], capture_output=True, text=True, check=True).stdout
    return [m.groups() for m in map(LINE.match, out.splitlines()) if m]


def main() -> int:
    engine, instances = sys.argv[1], sys.argv[2]
    bad = [n for t, n in symbols(engine) if t not in "Uuvw" and "flash_fwd_kernel" in n]
    undefined = [n for t, n in symbols(engine) if t == "U" and "gated_attention_bf16_d128" in n]
    defined = [n for t, n in symbols(instances) if t in "TtWw" and "flash_fwd_kernel" in n]
    print(f"engine TU: {len(bad)} kernel definitions, {len(undefined)} undefined engine call; "
          f"instantiation TU: {len(defined)} kernel definitions")
    ok = not bad and undefined and defined
    print("instantiation pattern OK" if ok else "instantiation pattern FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
