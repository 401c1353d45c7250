"""Bad arguments raise StrataError (a ValueError) naming the argument, and nothing is written:
neither the caller's tensors nor, at the C ABI, an output buffer that was handed in."""
from __future__ import annotations

import ctypes

import pytest
import torch

import strata_torch as st
from strata_torch import _capi
from conftest import rand


def good(b=2, s=16, h=4, hk=2, d=64, dtype=torch.bfloat16):
    return rand(b, s, h, d, dtype=dtype), rand(b, s, hk, d, dtype=dtype), rand(
        b, s, hk, d, dtype=dtype)


def expect_error(match, fn, *args, **kwargs):
    """fn(*args) raises StrataError matching `match` and leaves every tensor argument as it was."""
    tensors = [a for a in list(args) + list(kwargs.values()) if isinstance(a, torch.Tensor)]
    before = [t.detach().clone() for t in tensors]
    with pytest.raises(st.StrataError, match=match):
        fn(*args, **kwargs)
    for t, b in zip(tensors, before):
        assert torch.equal(t.detach(), b), "an argument was written"


def test_dtype():
    q, k, v = good()
    expect_error(r"^q: dtype torch.float32", st.flash_attn_func, q.float(), k, v)
    expect_error(r"^v: dtype torch.float16 differs from q's", st.flash_attn_func, q, k, v.half())


def test_not_a_tensor():
    q, k, v = good()
    expect_error(r"^k: expected a torch.Tensor, got list", st.flash_attn_func, q, [1.0], v)


def test_head_dim_not_compiled():
    q, k, v = good(d=32)
    expect_error(r"d = 32 is not a compiled head dimension", st.flash_attn_func, q, k, v)


def test_shapes():
    q, k, v = good()
    expect_error(r"^k: batch 1 differs from q's 2", st.flash_attn_func, q, k[:1], v[:1])
    expect_error(r"^v: shape \[2, 16, 2, 64\] differs from k's \[2, 8, 2, 64\]",
                 st.flash_attn_func, q, k[:, :8].contiguous(), v)
    q3, k3, v3 = good(h=3, hk=2)
    expect_error(r"^k: 2 heads do not divide q's 3", st.flash_attn_func, q3, k3, v3)
    expect_error(r"^q: expected 4 dimensions \[batch, seqlen, heads, head_dim\]",
                 st.flash_attn_func, q[0], k, v)


def test_non_contiguous():
    q, k, v = good()
    # head_dim not contiguous
    qt = q.transpose(2, 3).contiguous().transpose(2, 3)
    expect_error(r"^q: the last dimension \(head_dim\) must be contiguous", st.flash_attn_func,
                 qt, k, v)
    # batch and sequence swapped: rows of a batch are not evenly spaced
    kt = k.transpose(0, 1).contiguous().transpose(0, 1)
    expect_error(r"^k: the batch stride \(128\) must be seqlen \* the token stride",
                 st.flash_attn_func, q, kt, v)


def test_misaligned():
    q, k, v = good()
    flat = torch.empty(q.numel() + 1, dtype=q.dtype)
    q_off = flat[1:].view(q.shape)  # 2-byte offset: rows no longer 16-byte aligned
    q_off.copy_(q.detach())
    expect_error(r"q is not 16-byte aligned", st.flash_attn_func, q_off, k, v)


def test_mask_arguments():
    q, k, v = good()
    expect_error(r"^window_size = \(4, 2\): Strata's window looks left only", st.flash_attn_func,
                 q, k, v, window_size=(4, 2))
    expect_error(r"^softmax_scale = nan", st.flash_attn_func, q, k, v, softmax_scale=float("nan"))


def test_varlen_offsets():
    q, k, v = rand(20, 2, 64), rand(20, 2, 64), rand(20, 2, 64)
    cu = torch.tensor([0, 12, 20], dtype=torch.int32)
    expect_error(r"^cu_seqlens_q: dtype torch.int64", st.flash_attn_varlen_func, q, k, v,
                 cu.long(), cu, 12, 12)
    expect_error(r"sequence 0 has 12 tokens, more than", st.flash_attn_varlen_func, q, k, v, cu,
                 cu, 11, 12)
    bad = torch.tensor([0, 14, 12], dtype=torch.int32)
    expect_error(r"cu_seqlens_q decreases at index 2", st.flash_attn_varlen_func, q, k, v, bad,
                 cu, 14, 14)
    expect_error(r"^max_seqlen_k = -1", st.flash_attn_varlen_func, q, k, v, cu, cu, 12, -1)


def test_value_residual_arguments():
    q, k, v = good()
    expect_error(r"^lambda_self: expected one value or one per KV head \(\[2\]\)",
                 st.value_residual, q, k, v, v.detach(), torch.ones(3), torch.ones(3))
    expect_error(r"^lambda_first: dtype torch.float64", st.value_residual, q, k, v, v.detach(),
                 torch.ones(2), torch.ones(2, dtype=torch.float64))
    expect_error(r"^v_first: shape", st.value_residual, q, k, v,
                 v.detach()[:, :8].contiguous(), 0.5, 0.5)
    expect_error(r"^kind = 'denseformer'", st.value_residual, q, k, v, v, kind="denseformer")


def test_gate_arguments():
    q, k, v = good()
    expect_error(r"^gate: dtype torch.float32", st.gated_attention, q, k, v, q.detach().float())
    expect_error(r"^gate: shape \[2, 16, 4, 32\] is neither q's", st.gated_attention, q, k, v,
                 q.detach()[..., :32])


def test_c_abi_writes_nothing_on_failure():
    """At the C ABI: a call refused for its last-checked field leaves a pre-filled out and lse
    untouched (the checks all run before the first launch)."""
    q, k, v = (t.detach() for t in good())
    out = torch.full_like(q, 7.0)
    lse = torch.full((4, 32), 7.0)
    a = _capi.Attention()
    a.q, a.k, a.v, a.out, a.lse = (_capi.tensor(t) for t in (q, k, v, out, lse))
    a.softmax_scale, a.window_left = 0.125, -2  # the bad field: checked by the launcher
    with pytest.raises(st.StrataError, match=r"window_left = -2"):
        _capi.library("sim").call("strata_flash_fwd", a)
    assert (out == 7.0).all() and (lse == 7.0).all()
    a.window_left = -1
    _capi.library("sim").call("strata_flash_fwd", a)
    assert not (out == 7.0).any()


def test_library_refuses_another_abi(monkeypatch):
    """A library whose ABI version or struct sizes differ from the bindings' is refused at load
    (a stale build would otherwise read misplaced fields)."""
    path = _capi.library("sim").path
    assert _capi.library("sim").executor == "sim_v1"
    monkeypatch.setattr(_capi, "CAPI_VERSION", _capi.CAPI_VERSION + 1)
    with pytest.raises(ImportError, match="C ABI version"):
        _capi.Library(path)
    monkeypatch.undo()

    class Shorter(ctypes.Structure):
        _fields_ = [("x", ctypes.c_int32)]

    monkeypatch.setattr(_capi, "STRUCTS", (*_capi.STRUCTS[:-1], Shorter))
    with pytest.raises(ImportError, match="struct sizes"):
        _capi.Library(path)


def test_simulator_settings():
    st.set_simulator(schedule="reverse")
    try:
        q, k, v = good(s=20)
        a = st.flash_attn_func(q, k, v, causal=True)
        st.set_simulator(schedule="random:3", workers=2)
        b = st.flash_attn_func(q, k, v, causal=True)
        assert torch.equal(a, b)  # schedules change the interleaving, never the result
    finally:
        st.set_simulator(schedule="forward", workers=1)
    with pytest.raises(st.StrataError, match="schedule: 'sideways'"):
        st.set_simulator(schedule="sideways")


def test_cuda_library_validates_like_the_simulator():
    """The nvcc build (compile-only here: no GPU) loads, has the same ABI, runs the same checks,
    and reports a launch it cannot make as an error instead of crashing. Built whenever nvcc is
    found (STRATA_TORCH_EXPECT_CUDA=1 then), so its absence fails rather than skips."""
    import os
    if os.environ.get("STRATA_TORCH_EXPECT_CUDA") != "1":
        pytest.skip("this build has no nvcc library (STRATA_TORCH_CUDA=OFF)")
    lib = _capi.library("cuda")
    assert lib.executor == "cuda_v1"
    q = torch.randn(1, 8, 2, 64).bfloat16()
    out, lse = torch.full_like(q, 7.0), torch.full((2, 8), 7.0)
    a = _capi.Attention()
    a.q, a.k, a.v, a.out, a.lse = (_capi.tensor(t) for t in (q, q, q, out, lse))
    a.softmax_scale, a.window_left = 0.125, -2
    with pytest.raises(st.StrataError, match=r"window_left = -2"):
        lib.call("strata_flash_fwd", a)
    if not torch.cuda.is_available():  # host pointers, no device: the launch itself fails
        a.window_left = -1
        with pytest.raises(st.StrataError, match=r"CUDA|cuda"):
            lib.call("strata_flash_fwd", a)
    assert (out == 7.0).all() and (lse == 7.0).all()
