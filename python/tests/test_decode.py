"""strata_torch's decode functions (one layer of a serving step over a paged KV cache) on CPU
tensors: sequences served step by step — a prefill chunk, then token by token or in chunks,
sequences finishing at different steps — through block tables with shuffled pages, a contiguous
cache and an HND cache view, with and without split-KV; every layer's outputs, gathered back to
their tokens, against the float64 transcription of the whole sequences (FlashAttention's rule),
and the caches holding what each paper caches. Bad arguments raise StrataError naming them, with
the caches untouched."""
from __future__ import annotations

import math

import pytest
import torch

import strata_torch as st
from conftest import check, rand
import reference as ref

bf16 = torch.bfloat16
LENS = [1, 6, 11, 0]  # a finished-at-once sequence, one with no tokens at all


def schedule(lens, first, chunk, page_size, layout="paged", seed=0):
    """The caches' geometry and the steps: (batch, token indices into the packed sequences)."""
    b, starts = len(lens), [sum(lens[:i]) for i in range(len(lens))]
    if layout == "contiguous":
        block_table, page_size, num_pages = None, max(lens), len(lens)
    else:
        per = max(1, math.ceil(max(lens) / page_size))
        num_pages = b * per + 3  # spare pages nobody owns
        g = torch.Generator().manual_seed(seed)
        block_table = torch.randperm(num_pages, generator=g)[:b * per].view(b, per).int()
    steps, done = [], [0] * b
    while any(done[s] < lens[s] for s in range(b)):
        new = [min(first if done[s] == 0 else chunk, lens[s] - done[s]) for s in range(b)]
        batch = st.DecodeBatch.build(block_table, torch.tensor(done), torch.tensor(new),
                                     page_size)
        idx = torch.cat([torch.arange(starts[s] + done[s], starts[s] + done[s] + new[s])
                         for s in range(b)])
        steps.append((batch, idx))
        done = [done[s] + new[s] for s in range(b)]
    return steps, num_pages, page_size


def new_cache(num_pages, page_size, heads, d, layout):
    if layout == "hnd":  # FlashInfer's HND pages, passed as their NHD view
        return torch.full((num_pages, heads, page_size, d), float("nan"), dtype=bf16).transpose(1, 2)
    return torch.full((num_pages, page_size, heads, d), float("nan"), dtype=bf16)


def per_sequence(fn, lens, *packed):
    """fn(*[1, n, ...] slices) over each sequence, concatenated back to packed rows."""
    outs, start = [], 0
    for n in lens:
        if n:
            outs.append(fn(*[t[start:start + n][None] if t is not None else None
                             for t in packed])[0])
        start += n
    return torch.cat(outs)


def written_rows(cache) -> int:
    """Token rows of a cache that were written (not NaN)."""
    return int((~torch.isnan(cache.float())).all(-1).all(-1).sum())


SCHEDULES = [  # (first chunk, later chunks, page size, layout, key splits)
    (1, 1, 4, "paged", 1),
    (3, 2, 1, "paged", 2),   # SGLang's page size 1
    (4, 1, 16, "hnd", 3),
    (2, 3, 0, "contiguous", 1),
]


def ids(s):
    return f"first{s[0]}-chunk{s[1]}-page{s[2]}-{s[3]}-splits{s[4]}"


@pytest.mark.parametrize("sch", SCHEDULES, ids=ids)
@pytest.mark.parametrize("method", ["vanilla", "gated", "gated_headwise", "window"])
def test_attention_and_gate(sch, method):
    h, hk, d = 4, 2, 64
    total = sum(LENS)
    q, gate = rand(total, h, d, requires_grad=False), rand(total, h, d, requires_grad=False)
    k, v = rand(total, hk, d, requires_grad=False), rand(total, hk, d, requires_grad=False)
    if method == "gated_headwise":
        gate = gate[..., 0].contiguous()
    window = (2, -1) if method == "window" else (-1, -1)
    steps, pages, ps = schedule(LENS, sch[0], sch[1], sch[2], sch[3])
    kc, vc = (new_cache(pages, ps, hk, d, sch[3]) for _ in range(2))
    out = torch.empty_like(q)
    for batch, idx in steps:
        if method.startswith("gated"):
            o = st.gated_attention_decode(q[idx], k[idx], v[idx], gate[idx], kc, vc, batch,
                                          num_splits=sch[4])
        else:
            o = st.flash_attn_decode(q[idx], k[idx], v[idx], kc, vc, batch, window_size=window,
                                     num_splits=sch[4])
        out[idx] = o

    def full(q_, k_, v_, g_):
        o = ref.attention(q_, k_, v_, causal=True, window_left=window[0])
        return ref.gated(o, g_) if g_ is not None else o

    g = gate if method.startswith("gated") else None
    o64 = per_sequence(full, LENS, q.double(), k.double(), v.double(),
                       g.double() if g is not None else None)
    on = per_sequence(full, LENS, q, k, v, g)
    check(f"decode_{method}", "out", out, o64, on)
    assert written_rows(kc) == total and written_rows(vc) == total


@pytest.mark.parametrize("sch", SCHEDULES[:2], ids=ids)
@pytest.mark.parametrize("kind", ["resformer", "svformer"])
def test_value_residual_stack(sch, kind):
    """ResFormer caches V' = lambda_self V_l + lambda_first V_0 per layer; SVFormer's layers
    l >= 1 read layer 0's V cache and store K only ((L + 1) / 2L of a vanilla cache)."""
    L, h, hk, d = 3, 4, 2, 64
    total = sum(LENS)
    qs, ks, vs = ([rand(total, n, d, requires_grad=False) for _ in range(L)]
                  for n in (h, hk, hk))
    lam = [(torch.rand(hk) + 0.5, torch.rand(hk) - 0.5) for _ in range(L)]
    steps, pages, ps = schedule(LENS, sch[0], sch[1], sch[2], sch[3])
    caches = [[new_cache(pages, ps, hk, d, sch[3]) for _ in range(2)] for _ in range(L)]
    outs = [torch.empty_like(qs[0]) for _ in range(L)]
    for batch, idx in steps:
        for l in range(L):
            kc, vc = caches[l]
            if l == 0:
                o = st.flash_attn_decode(qs[0][idx], ks[0][idx], vs[0][idx], kc, vc, batch,
                                         num_splits=sch[4])
            elif kind == "svformer":
                o = st.flash_attn_decode(qs[l][idx], ks[l][idx], None, kc, caches[0][1], batch,
                                         num_splits=sch[4])
            else:
                o = st.value_residual_decode(qs[l][idx], ks[l][idx], vs[l][idx], vs[0][idx],
                                             lam[l][0], lam[l][1], kc, vc, batch,
                                             num_splits=sch[4])
            outs[l][idx] = o

    def layer(l, dtype):
        def f(q_, k_, v_, v0):
            if l == 0:
                return ref.attention(q_, k_, v_, causal=True)
            if kind == "svformer":
                return ref.attention(q_, k_, v0, causal=True)
            return ref.attention(q_, k_, ref.resformer_values(v_, v0, *lam[l]), causal=True)
        cast = (lambda t: t.double()) if dtype == torch.float64 else (lambda t: t)
        return per_sequence(f, LENS, cast(qs[l]), cast(ks[l]), cast(vs[l]), cast(vs[0]))

    for l in range(L):
        check(f"decode_{kind}", "out", outs[l], layer(l, torch.float64), layer(l, bf16))
        assert written_rows(caches[l][0]) == total
        assert written_rows(caches[l][1]) == (total if kind == "resformer" or l == 0 else 0)


@pytest.mark.parametrize("sch", SCHEDULES[:3], ids=ids)
def test_depth_stack(sch):
    """Each layer's (k^, v^) of the step are the sources of the later layers; the cache holds
    k^ and v^ (a vanilla cache's size)."""
    L, h, hk, d = 3, 4, 2, 64
    sources = [[], [0], [0, 1]]
    total = sum(LENS)
    qs, ks, vs = ([rand(total, n, d, requires_grad=False) for _ in range(L)]
                  for n in (h, hk, hk))
    gains = [(1 + 0.1 * torch.randn(d), 1 + 0.1 * torch.randn(d)) for _ in range(L)]
    steps, pages, ps = schedule(LENS, sch[0], sch[1], sch[2], sch[3])
    caches = [[new_cache(pages, ps, hk, d, sch[3]) for _ in range(2)] for _ in range(L)]
    outs = [torch.empty_like(qs[0]) for _ in range(L)]
    for batch, idx in steps:
        srcs = []
        for l in range(L):
            o, src = st.depth_attention_decode(
                qs[l][idx], ks[l][idx], vs[l][idx], *caches[l], batch,
                sources=[srcs[j] for j in sources[l]], gamma_q=gains[l][0], gamma_k=gains[l][1],
                num_splits=sch[4])
            outs[l][idx] = o
            srcs.append(src)

    def stack(dtype):
        cast = (lambda t: t.double()) if dtype == torch.float64 else (lambda t: t)
        res, start = [[] for _ in range(L)], 0
        for n in LENS:
            if n:
                srcs, pos = [], torch.arange(n)
                for l in range(L):
                    o, src = ref.depth_layer(
                        *(cast(t[l][start:start + n])[None] for t in (qs, ks, vs)),
                        [srcs[j] for j in sources[l]], gains[l][0], gains[l][1], pos)
                    res[l].append(o[0])
                    srcs.append(src)
            start += n
        return [torch.cat(r) for r in res]

    o64, on = stack(torch.float64), stack(bf16)
    for l in range(L):
        check("decode_depth", "out", outs[l], o64[l], on[l])
        assert written_rows(caches[l][0]) == total and written_rows(caches[l][1]) == total


@pytest.mark.parametrize("sch", SCHEDULES[:2], ids=ids)
@pytest.mark.parametrize("dynamic", [False, True])
def test_exoformer_stack(sch, dynamic):
    L, h, hk, d = 2, 4, 2, 64
    total = sum(LENS)
    heads = (h, hk, hk, h)
    ps_ = [[rand(total, n, d, requires_grad=False) for n in heads] for _ in range(L)]
    anchors = [rand(total, n, d, requires_grad=False) for n in heads]
    anchor_gains = [1 + 0.1 * torch.randn(d) for _ in range(4)]
    lam = [([0.5 + torch.rand(n) for n in heads], [0.5 + torch.rand(n) for n in heads])
           for _ in range(L)]
    qk_gains = [(1 + 0.1 * torch.randn(d), 1 + 0.1 * torch.randn(d)) for _ in range(L)]
    s = [(0.5 + torch.rand(total, 8)) if dynamic else None for _ in range(L)]
    steps, pages, ps = schedule(LENS, sch[0], sch[1], sch[2], sch[3])
    caches = [[new_cache(pages, ps, hk, d, sch[3]) for _ in range(2)] for _ in range(L)]
    outs = [torch.empty_like(ps_[0][0]) for _ in range(L)]
    for batch, idx in steps:
        for l in range(L):
            outs[l][idx] = st.exoformer_decode(
                [t[idx] for t in ps_[l]], [t[idx] for t in anchors], anchor_gains, *lam[l],
                *qk_gains[l], *caches[l], batch, s=s[l][idx] if dynamic else None,
                num_splits=sch[4])

    def layer(l, dtype):
        cast = (lambda t: t.double()) if dtype == torch.float64 else (lambda t: t)
        res, start = [], 0
        for n in LENS:
            if n:
                sl = slice(start, start + n)
                res.append(ref.exoformer_layer(
                    [cast(t[sl])[None] for t in ps_[l]], [cast(t[sl])[None] for t in anchors],
                    anchor_gains, *lam[l], *qk_gains[l],
                    s[l][sl][None] if dynamic else None, torch.arange(n))[0])
            start += n
        return torch.cat(res)

    for l in range(L):
        check("decode_exoformer", "out", outs[l], layer(l, torch.float64), layer(l, bf16))
        assert written_rows(caches[l][0]) == total and written_rows(caches[l][1]) == total


@pytest.mark.parametrize("sch", SCHEDULES[:3], ids=ids)
@pytest.mark.parametrize("site", ["kv", "output"])
def test_mea(sch, site):
    """The cache holds the H_c = 2 component heads for H_kv = 4 composite heads (virtual
    heads: half a vanilla cache)."""
    h, h_kv, h_c, d = 8, 4, 2, 64
    total = sum(LENS)
    q = rand(total, h, d, requires_grad=False)
    kc_, vc_ = (rand(total, h_c, d, requires_grad=False) for _ in range(2))
    a_k, a_v = (torch.randn(h_c, h_kv) / math.sqrt(h_c) for _ in range(2))
    rows = h_kv if site == "kv" else h
    gn = [1 + 0.1 * torch.randn(rows, d), 0.1 * torch.randn(rows, d)] * (2 if site == "kv" else 1)
    names = ("gamma_k", "beta_k", "gamma_v", "beta_v") if site == "kv" else ("gamma_o", "beta_o")
    steps, pages, ps = schedule(LENS, sch[0], sch[1], sch[2], sch[3])
    kc, vc = (new_cache(pages, ps, h_c, d, sch[3]) for _ in range(2))
    out = torch.empty_like(q)
    for batch, idx in steps:
        out[idx] = st.mea_decode(q[idx], kc_[idx], vc_[idx], a_k, a_v, kc, vc, batch, site=site,
                                 num_splits=sch[4], **dict(zip(names, gn)))

    def full(dtype):
        cast = (lambda t: t.double()) if dtype == torch.float64 else (lambda t: t)
        res, start = [], 0
        for n in LENS:
            if n:
                sl = slice(start, start + n)
                res.append(ref.mea_layer(cast(q[sl])[None], cast(kc_[sl])[None],
                                         cast(vc_[sl])[None], a_k, a_v, gn, site,
                                         torch.arange(n))[0])
            start += n
        return torch.cat(res)

    check(f"decode_mea_{site}", "out", out, full(torch.float64), full(bf16))
    assert written_rows(kc) == total and written_rows(vc) == total


def test_lse_and_single_token():
    """One sequence, one token, one key: out is v and lse the one logit."""
    q, k, v = (rand(1, 2, 64, requires_grad=False) for _ in range(3))
    batch = st.DecodeBatch.build(torch.tensor([[2]], dtype=torch.int32), torch.tensor([0]),
                                 torch.tensor([1]), 16)
    kc, vc = (new_cache(4, 16, 2, 64, "paged") for _ in range(2))
    out, lse = st.flash_attn_decode(q, k, v, kc, vc, batch, return_lse=True)
    assert torch.equal(out, v)
    logit = (q.double() * k.double()).sum(-1)[0] / 8.0
    assert torch.allclose(lse[:, 0].double(), logit, atol=1e-4)
    assert torch.equal(kc[2, 0], k[0]) and written_rows(kc) == 1


# ---- bad arguments: StrataError naming the argument, the caches untouched ----------------------


def _setup():
    h, hk, d = 4, 2, 64
    steps, pages, ps = schedule([3, 5], 3, 1, 4, "paged")
    batch, idx = steps[0]
    q = rand(8, h, d, requires_grad=False)[idx]
    k, v = (rand(8, hk, d, requires_grad=False)[idx] for _ in range(2))
    kc, vc = (new_cache(pages, ps, hk, d, "paged") for _ in range(2))
    return q, k, v, kc, vc, batch


BAD = [
    ("slot_mapping", lambda a: a.update(batch=a["batch"]._replace(
        slot_mapping=a["batch"].slot_mapping + 1000))),
    ("seqlens_k", lambda a: a.update(batch=a["batch"]._replace(
        seqlens_k=a["batch"].seqlens_k.long()))),
    ("seqlens_k", lambda a: a.update(batch=a["batch"]._replace(
        seqlens_k=a["batch"].seqlens_k + 100))),
    ("block_table", lambda a: a.update(batch=a["batch"]._replace(
        block_table=a["batch"].block_table[:1]))),
    ("block_table", lambda a: a.update(batch=a["batch"]._replace(
        block_table=a["batch"].block_table + 1000))),
    ("cu_seqlens_q", lambda a: a.update(batch=a["batch"]._replace(
        cu_seqlens_q=a["batch"].cu_seqlens_q.flip(0)))),
    ("k_cache", lambda a: a.update(kc=a["kc"].half())),
    ("v_cache", lambda a: a.update(vc=a["vc"][:, :, :1])),
    ("k_cache", lambda a: a.update(kc=a["kc"][..., :32])),
    ("q", lambda a: a.update(q=a["q"][None])),
    ("k", lambda a: a.update(k=a["k"][:, :1])),
    ("v", lambda a: a.update(v=a["v"].float())),
    ("softmax_scale", lambda a: a.update(softmax_scale=-1.0)),
    ("num_splits", lambda a: a.update(num_splits=0)),
]


@pytest.mark.parametrize("needle,spoil", BAD, ids=[f"{i}-{b[0]}" for i, b in enumerate(BAD)])
def test_bad_arguments_are_named_and_nothing_is_written(needle, spoil):
    q, k, v, kc, vc, batch = _setup()
    a = dict(q=q, k=k, v=v, kc=kc, vc=vc, batch=batch, softmax_scale=None, num_splits=1)
    spoil(a)
    with pytest.raises(st.StrataError, match=needle):
        st.flash_attn_decode(a["q"], a["k"], a["v"], a["kc"], a["vc"], a["batch"],
                             softmax_scale=a["softmax_scale"], num_splits=a["num_splits"])
    assert written_rows(kc) == 0 and written_rows(vc) == 0


def test_method_arguments_are_named():
    q, k, v, kc, vc, batch = _setup()
    with pytest.raises(st.StrataError, match="lambda_self"):
        st.value_residual_decode(q, k, v, v, torch.ones(3), torch.ones(3), kc, vc, batch)
    with pytest.raises(st.StrataError, match="gate"):
        st.gated_attention_decode(q, k, v, q[:, :2], kc, vc, batch)
    with pytest.raises(st.StrataError, match=r"sources\[0\].khat"):
        st.depth_attention_decode(q, k, v, kc, vc, batch, sources=[(q, k)])
    with pytest.raises(st.StrataError, match="positions"):
        st.depth_attention_decode(q, k, v, kc, vc, batch._replace(positions=None))
    with pytest.raises(st.StrataError, match="a_k"):
        st.mea_decode(q, k, v, torch.ones(3, 2), torch.ones(2, 2), kc, vc, batch,
                      gamma_k=torch.ones(2, 64), beta_k=torch.ones(2, 64),
                      gamma_v=torch.ones(2, 64), beta_v=torch.ones(2, 64))
    assert written_rows(kc) == 0 and written_rows(vc) == 0


def test_compile_fullgraph():
    """A decode step of two layers compiled with fullgraph=True equals eager (the cache
    mutation is declared, so the compiled graph appends like eager)."""
    q, k, v, kc, vc, batch = _setup()

    def step(q, k, v, kc, vc):
        o = st.flash_attn_decode(q, k, v, kc, vc, batch)
        return st.gated_attention_decode(o, k, v, q, kc2, vc2, batch)

    kc2, vc2 = kc.clone(), vc.clone()
    eager = step(q, k, v, kc, vc)
    kc_e, vc_e = kc.clone(), vc.clone()
    for t in (kc, vc, kc2, vc2):
        t.fill_(float("nan"))
    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")(q, k, v, kc, vc)
    assert torch.equal(compiled, eager)
    assert torch.equal(kc.nan_to_num(7), kc_e.nan_to_num(7))
    assert torch.equal(vc.nan_to_num(7), vc_e.nan_to_num(7))


def test_opcheck():
    q, k, v, kc, vc, batch = _setup()
    args = ("vanilla", q, k, v, kc, vc, batch.cu_seqlens_q, batch.seqlens_k, batch.block_table,
            batch.slot_mapping, batch.positions, batch.max_seqlen_q, 0.125, True, -1, 1, None,
            [], [], [], [])
    torch.library.opcheck(torch.ops.strata.decode_layer.default, args,
                          test_utils=("test_schema", "test_faketensor"))
