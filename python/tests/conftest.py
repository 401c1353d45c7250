"""Shared helpers of the strata_torch tests: FlashAttention's error rule, the table of largest
errors printed at the end of a run, and the random inputs."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

# worst error / bound per (op, quantity), printed by pytest_terminal_summary
_WORST: dict = {}


def check(op: str, what: str, got, ref64, naive, atol: float = 1e-5) -> float:
    """FlashAttention's rule: max|got - ref64| <= 2 max|naive - ref64| + atol. Records and
    returns the ratio err / bound."""
    got, naive = got.double(), naive.double()
    assert torch.isfinite(got).all(), f"{op} {what}: non-finite values"
    err = (got - ref64).abs().max().item() if got.numel() else 0.0
    naive_err = (naive - ref64).abs().max().item() if got.numel() else 0.0
    assert naive_err == naive_err, f"{op} {what}: the naive error is NaN (vacuous bound)"
    bound = 2 * naive_err + atol
    ratio = err / bound
    key = (op, what)
    if ratio > _WORST.get(key, (0.0,))[0]:
        _WORST[key] = (ratio, err, bound)
    assert err <= bound, f"{op} {what}: max error {err:.3e} > bound {bound:.3e}"
    return ratio


def unit_roundoff(dtype) -> float:
    return {torch.bfloat16: 2.0**-8, torch.float16: 2.0**-11}[dtype]


def grad_atol(dtype, *ref_grads) -> float:
    """The atol of gradients: the dtype's unit roundoff times the largest float64 gradient of the
    op. A fixed atol fails where the exact gradient is 0 and the naive one happens to be exact
    too (dQ of a query with one key: dS = P (dP - D) with D = rowsum(dO o O) rounded)."""
    return unit_roundoff(dtype) * max(g.abs().max().item() for g in ref_grads if g.numel())


def sum_atol(dtype, terms) -> float:
    """The atol of a gradient that is a sum over many elements (ResFormer's dlambda = sum of
    V o dL/dV'): elements each off by ~u relative, with random signs, add up to
    u * ||terms||_2, doubled as the rule doubles the naive error. The 2x-naive rule alone is one
    noisy sample for a single scalar."""
    return 2 * unit_roundoff(dtype) * terms.double().norm().item()


def check_sum(op: str, what: str, got, ref64, naive, terms_sumsq, dtype, upstream=None) -> float:
    """FlashAttention's rule per entry for a gradient that sums many terms c_i g_i (a lambda, a
    gain, a per-token scale; g the upstream gradient):

        |got - ref64| <= 2 (|naive - ref64| + u sqrt(sum terms_i^2) + u G sqrt(sum c_i^2))

    terms_sumsq: per entry, sum of the squared float64 terms (each off by ~u relative, random
    signs); upstream = (G, coef_sumsq): G the largest float64 upstream gradient and, per entry,
    sum c_i^2 — the kernels' upstream gradients are off by up to ~u G even where the exact one is
    0 (grad_atol), and that error reaches the sum through c. Records and returns the worst ratio."""
    got, naive = got.double(), naive.double()
    assert got.shape == ref64.shape, f"{op} {what}: shape {tuple(got.shape)}"
    assert torch.isfinite(got).all(), f"{op} {what}: non-finite values"
    u = unit_roundoff(dtype)
    err = (got - ref64).abs()
    scale = terms_sumsq.sqrt()
    if upstream is not None:
        scale = scale + upstream[0] * upstream[1].sqrt()
    bound = 2 * ((naive - ref64).abs() + u * scale) + 1e-12
    ratio = (err / bound).max().item()
    key = (op, what)
    if ratio > _WORST.get(key, (0.0,))[0]:
        i = int((err / bound).flatten().argmax())
        _WORST[key] = (ratio, err.flatten()[i].item(), bound.flatten()[i].item())
    assert ratio <= 1, f"{op} {what}: error {err.max().item():.3e}, {ratio:.2f} of its bound"
    return ratio


def rand(*shape, dtype=torch.bfloat16, scale=1.0, requires_grad=True):
    t = (torch.randn(*shape, dtype=torch.float32) * scale).to(dtype)
    return t.requires_grad_(requires_grad)


def leaf64(t):
    return t.detach().double().requires_grad_(True)


def leaf_same(t):
    return t.detach().clone().requires_grad_(True)


def pytest_terminal_summary(terminalreporter):
    if not _WORST:
        return
    terminalreporter.section("largest error against the float64 official-code transcription")
    terminalreporter.write_line(f"{'op':<26}{'quantity':<16}{'max error':>12}{'bound':>12}"
                                f"{'ratio':>8}")
    for (op, what), (ratio, err, bound) in sorted(_WORST.items()):
        terminalreporter.write_line(f"{op:<26}{what:<16}{err:>12.3e}{bound:>12.3e}{ratio:>8.3f}")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


def pytest_configure(config):
    # one worker thread per test process unless the caller asked for more (ctest runs two)
    os.environ.setdefault("STRATA_SIM_WORKERS", "1")
