#!/usr/bin/env python3
"""sass_loop.loop_stats on hand-written SASS with hand-counted answers (ctest: static_sass_loop)."""

from __future__ import annotations

import sys
import unittest

import sass_loop


def sass(*body: str) -> str:
    """cuobjdump-style lines: one instruction per 16 bytes from address 0."""
    lines = ["        Function : k"]
    for i, text in enumerate(body):
        lines.append(f"        /*{16 * i:04x}*/                   {text} ;  /* 0x000 */")
    return "\n".join(lines)


def stats(*body: str) -> dict[str, int]:
    return sass_loop.loop_stats(sass_loop.parse(sass(*body))["k"])


class LoopStats(unittest.TestCase):
    def test_no_loop_with_hmma(self):
        self.assertEqual(stats("MOV R0, R1", "EXIT"), {"loop_hmma": 0, "loop_path": 0})
        # a loop without HMMA (a copy loop) is not a main loop
        self.assertEqual(stats("IADD3 R0, R0, 0x1, RZ", "@P0 BRA 0x0", "EXIT"),
                         {"loop_hmma": 0, "loop_path": 0})

    def test_straight_loop_counts_every_instruction_once(self):
        # 0x00..0x30: LDSM, HMMA, HMMA, back edge: 4 instructions, 2 HMMA
        self.assertEqual(stats("LDSM.16.M88.4 R0, [R1]", "HMMA.16816.F32.BF16 R4, R0, R2, R4",
                               "HMMA.16816.F32.BF16 R8, R0, R2, R8", "@P0 BRA 0x0", "EXIT"),
                         {"loop_hmma": 2, "loop_path": 4})

    def test_masked_region_is_skipped_but_work_is_not(self):
        body = ["HMMA.16816.F32.BF16 R4, R0, R2, R4",  # 0x00
                "@P1 BRA 0x50",                         # 0x10: skips the masked scores
                "ISETP.GT.AND P2, PT, R1, R3, PT",      # 0x20
                "FSEL R4, R4, -INF , !P2",              # 0x30
                "FSEL R5, R5, -INF , !P2",              # 0x40
                "MUFU.EX2 R4, R4",                      # 0x50
                "@P3 BRA 0x80",                         # 0x60: may skip the next tile's load?
                "LDGSTS.E.BYPASS.128 [R9], [R10.64]",   # 0x70: no: it holds cp.async
                "@P0 BRA 0x0",                          # 0x80: back edge
                "EXIT"]
        # HMMA, BRA, MUFU, BRA, LDGSTS, back edge
        self.assertEqual(stats(*body), {"loop_hmma": 1, "loop_path": 6})

    def test_if_else_takes_the_lighter_arm_and_inner_loops_once(self):
        body = ["HMMA.16816.F32.BF16 R4, R0, R2, R4",  # 0x00
                "@P1 BRA 0x50",                         # 0x10: to the else arm
                "FMUL R4, R4, R5",                      # 0x20: then arm, 3 instructions
                "FMUL R6, R6, R5",                      # 0x30
                "BRA 0x70",                             # 0x40: over the else arm
                "FADD R4, R4, R5",                      # 0x50: else arm, 2 instructions
                "FADD R6, R6, R5",                      # 0x60
                "IADD3 R7, R7, 0x1, RZ",                # 0x70: inner loop head
                "@P2 BRA 0x70",                         # 0x80: inner back edge: once round
                "@P0 BRA 0x0",                          # 0x90: outer back edge
                "EXIT"]
        # HMMA, BRA, (then: FMUL FMUL BRA = 3 | else: FADD FADD = 2), IADD3, BRA, BRA
        self.assertEqual(stats(*body), {"loop_hmma": 1, "loop_path": 7})

    def test_the_loop_with_most_hmma_wins(self):
        body = ["HMMA.16816.F32.BF16 R4, R0, R2, R4",  # 0x00: loop A, 1 HMMA
                "@P0 BRA 0x0",                          # 0x10
                "HMMA.16816.F32.BF16 R4, R0, R2, R4",  # 0x20: loop B, 2 HMMA
                "HMMA.16816.F32.BF16 R8, R0, R2, R8",  # 0x30
                "NOP",                                  # 0x40
                "@P0 BRA 0x20",                         # 0x50
                "EXIT"]
        self.assertEqual(stats(*body), {"loop_hmma": 2, "loop_path": 4})


if __name__ == "__main__":
    unittest.main()
