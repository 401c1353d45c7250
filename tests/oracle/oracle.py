"""The autodiff oracle: a jax.numpy (float64) transcription of every attention method.

Independent of the fp64 C++ reference (include/strata/reference/). The two meet only through the case
directories described in CONTRACT.md (config.json + NAME.npy). Each method is one function

    fwd_<method>(inp: dict[str, jnp.ndarray], cfg: dict) -> (outputs: dict, aux: dict)

written as a dense masked attention (a [Nq, Nk] boolean mask over the packed token axis built from
cu_seqlens, causal bottom-right, window_left), in the order of operations of the official code named by
SPEC.md. Gradients come from jax (value_and_grad of loss = sum_l sum(out.l * dout.l)).

`compare(case_dir)` loads a case, recomputes everything and compares outputs, aux and gradients with the
contract rule err = max|ref - oracle| / max(max|oracle|, 1e-30) (equal infinities are equal).
"""

import json
import math
import os

os.environ.setdefault("JAX_ENABLE_X64", "1")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Cases are tiny: XLA's LLVM optimisation and fusion emitters cost seconds of compilation per case and
# buy nothing here (IEEE semantics are unchanged: no fast-math either way).
for _flag in ("--xla_backend_optimization_level=0", "--xla_cpu_use_fusion_emitters=false"):
    if _flag.split("=")[0] not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _flag).strip()

import numpy as np  # noqa: E402
import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402

TOLERANCE = 1e-9

# ----------------------------------------------------------------------------------------------------
# Building blocks (CONTRACT.md "Shared building blocks")
# ----------------------------------------------------------------------------------------------------


def token_positions(cu):
    """Position of each packed token inside its own sequence, and its sequence id."""
    cu = [int(c) for c in cu]
    pos = np.zeros(cu[-1], dtype=np.int64)
    seq = np.zeros(cu[-1], dtype=np.int64)
    for b in range(len(cu) - 1):
        pos[cu[b]:cu[b + 1]] = np.arange(cu[b + 1] - cu[b])
        seq[cu[b]:cu[b + 1]] = b
    return pos, seq


def build_mask(cfg):
    """Dense boolean mask [Nq, Nk]: query i and key j are connected iff they belong to the same sequence
    and (!causal || j <= i + o) && (window_left < 0 || j >= i + o - window_left), o = Tk - Tq
    (FlashAttention bottom-right alignment), with local indices i, j."""
    cu_q = [int(c) for c in cfg["cu_seqlens_q"]]
    cu_k = [int(c) for c in cfg["cu_seqlens_k"]]
    assert len(cu_q) == len(cu_k), "cu_seqlens_q and cu_seqlens_k must have the same length"
    causal = bool(cfg["causal"])
    wl = int(cfg["window_left"])
    pos_q, seq_q = token_positions(cu_q)
    pos_k, seq_k = token_positions(cu_k)
    tq = np.diff(cu_q)[seq_q] if len(seq_q) else np.zeros(0, np.int64)
    tk = np.diff(cu_k)[seq_q] if len(seq_q) else np.zeros(0, np.int64)
    off = (tk - tq)[:, None]                      # o of the query's sequence
    i = pos_q[:, None]
    j = pos_k[None, :]
    mask = seq_q[:, None] == seq_k[None, :]
    if causal:
        mask &= j <= i + off
    if wl >= 0:
        mask &= j >= i + off - wl
    return mask


def rmsnorm(x, gamma, eps):
    """gamma * x / sqrt(mean(x^2) + eps) over the last axis (ExoFormer/Llama order: normalize, then gain)."""
    var = jnp.mean(x * x, axis=-1, keepdims=True)
    return (x * jax.lax.rsqrt(var + eps)) * gamma


def groupnorm_head(x, gamma, beta, eps):
    """Per (token, head) normalisation over d with biased variance, affine gamma/beta of shape [heads, d]."""
    mu = jnp.mean(x, axis=-1, keepdims=True)
    xc = x - mu
    var = jnp.mean(xc * xc, axis=-1, keepdims=True)
    return gamma * (xc / jnp.sqrt(var + eps)) + beta


def rope(x, pos, theta):
    """Rotate-half RoPE, x [N, heads, d], pos [N] (official: inv_freq = 1 / theta^(arange(0,d,2)/d),
    emb = cat(freqs, freqs), y = x cos + rotate_half(x) sin)."""
    d = x.shape[-1]
    inv_freq = 1.0 / (theta ** (np.arange(0, d, 2, dtype=np.float64) / d))
    freqs = np.asarray(pos, dtype=np.float64)[:, None] * inv_freq[None, :]
    emb = np.concatenate([freqs, freqs], axis=-1)
    cos = jnp.asarray(np.cos(emb))[:, None, :]
    sin = jnp.asarray(np.sin(emb))[:, None, :]
    x1 = x[..., : d // 2]
    x2 = x[..., d // 2:]
    rot = jnp.concatenate([-x2, x1], axis=-1)
    return x * cos + rot * sin


def attention(q, k, v, mask, scale):
    """Dense masked attention. q [Nq,H,d], k/v [Nk,Hkv,d], mask [Nq,Nk] bool.
    Returns O [Nq,H,d] and LSE [Nq,H] (natural log). A query with no connected key has O = 0,
    LSE = -inf and zero gradient (no NaN: masked scores are -inf, the row max is replaced by 0 and
    the normaliser by 1 where the row is empty)."""
    h = q.shape[1]
    hkv = k.shape[1]
    g = h // hkv
    kv_head = np.arange(h) // g                    # contiguous groups, as repeat_kv
    kr = k[:, kv_head, :]                          # [Nk,H,d]
    vr = v[:, kv_head, :]
    s = scale * jnp.einsum("qhd,khd->hqk", q, kr)  # [H,Nq,Nk]
    m = jnp.asarray(mask)[None, :, :]
    row = np.asarray(mask).any(axis=1)             # [Nq]
    sm = jnp.where(m, s, -jnp.inf)
    mx = jax.lax.stop_gradient(jnp.max(sm, axis=-1, keepdims=True)) if sm.shape[-1] else jnp.zeros(
        sm.shape[:-1] + (1,))
    mx = jnp.where(jnp.asarray(row)[None, :, None], mx, 0.0)
    e = jnp.exp(sm - mx)                           # masked: exp(-inf) = 0, gradient 0
    l = jnp.sum(e, axis=-1, keepdims=True)
    l_safe = jnp.where(jnp.asarray(row)[None, :, None], l, 1.0)
    p = e / l_safe
    o = jnp.einsum("hqk,khd->qhd", p, vr)
    lse = jnp.where(jnp.asarray(row)[None, :], (mx + jnp.log(l_safe))[..., 0], -jnp.inf)  # [H,Nq]
    return o, lse.T


def _pos(cfg):
    return token_positions(cfg["cu_seqlens_q"])[0]


def _scale(cfg):
    return float(cfg["softmax_scale"])


# ----------------------------------------------------------------------------------------------------
# Methods (CONTRACT.md "Methods"). Each returns (outputs, aux).
# ----------------------------------------------------------------------------------------------------


def fwd_vanilla(inp, cfg):
    mask = build_mask(cfg)
    out, aux = {}, {}
    for l in range(cfg["num_layers"]):
        o, lse = attention(inp[f"q.{l}"], inp[f"k.{l}"], inp[f"v.{l}"], mask, _scale(cfg))
        out[f"out.{l}"] = o
        aux[f"lse.{l}"] = lse
    return out, aux


def depth_sources_from_rule(num_layers, stride, recent):
    """S_l = {j < l : j mod s == 0} U {l-r .. l-1}, j >= 0 (SPEC §1a step 4)."""
    res = []
    for l in range(num_layers):
        s = {j for j in range(l) if j % stride == 0}
        s |= {j for j in range(l - recent, l) if j >= 0}
        res.append(sorted(s))
    return res


def fwd_depth(inp, cfg):
    """Depth-Attention, SDPA path of hyq718/Depth-Attention (LlamaSdpaAttention.forward, branch
    depth_softmax) with the mix of `_depth_attention_split_mix`:
    q-norm -> RoPE(q, k) -> k-norm (post-RoPE) -> group-mean query -> split scores
    (cross = einsum(q, k_j) / sqrt(d), self = sum(q * k_l) / sqrt(d)) -> softmax over [sources..., self]
    -> cross_mixed + self_weight * self_v -> SDPA(q, repeat_kv(k_hat), repeat_kv(v_hat))."""
    mask = build_mask(cfg)
    pos = _pos(cfg)
    L, H, Hkv, d = cfg["num_layers"], cfg["num_heads"], cfg["num_kv_heads"], cfg["head_dim"]
    G = H // Hkv
    sources = cfg["sources"]
    out, aux = {}, {}
    khat, vhat = [], []
    for l in range(L):
        q, k, v = inp[f"q.{l}"], inp[f"k.{l}"], inp[f"v.{l}"]
        if cfg["qk_norm"]:
            q = rmsnorm(q, inp[f"gamma_q.{l}"], cfg["norm_eps"])
        if cfg["rope"]:
            q = rope(q, pos, cfg["rope_theta"])
            k = rope(k, pos, cfg["rope_theta"])
        kh = rmsnorm(k, inp[f"gamma_k.{l}"], cfg["norm_eps"]) if cfg["qk_norm"] else k
        n = q.shape[0]
        qbar = jnp.mean(q.reshape(n, Hkv, G, d), axis=2)          # [N,Hkv,d]
        src = list(sources[l])
        sq = math.sqrt(d)
        if src:
            ck = jnp.stack([khat[j] for j in src], axis=0)          # [S,N,Hkv,d]
            cv = jnp.stack([vhat[j] for j in src], axis=0)
            cross = jnp.einsum("thd,sthd->ths", qbar, ck) / sq      # [N,Hkv,S]
            selfs = jnp.sum(qbar * kh, axis=-1, keepdims=True) / sq
            z = jnp.concatenate([cross, selfs], axis=-1)
            a = jax.nn.softmax(z, axis=-1)
            vh = jnp.einsum("ths,sthd->thd", a[..., :-1], cv) + a[..., -1:] * v
        else:
            # a single candidate (layer 0): softmax = 1, v_hat = 1 * v
            selfs = jnp.sum(qbar * kh, axis=-1, keepdims=True) / sq
            a = jax.nn.softmax(selfs, axis=-1)
            vh = a[..., -1:] * v
        khat.append(kh)
        vhat.append(vh)
        o, lse = attention(q, kh, vh, mask, _scale(cfg))
        out[f"out.{l}"] = o
        aux[f"khat.{l}"] = kh
        aux[f"vhat.{l}"] = vh
        aux[f"lse.{l}"] = lse
    return out, aux


def fwd_resformer(inp, cfg):
    """Value-Residual-Learning modeling_llama_resformer.py: value_states = l_first * V_0 + l_self * V_n
    (official constants 0.5 / 0.5; here the lambdas are inputs, scalar or per KV head)."""
    mask = build_mask(cfg)
    out, aux = {}, {}
    v0 = inp["v.0"]
    for l in range(cfg["num_layers"]):
        v = inp[f"v.{l}"]
        if l >= 1:
            ls, lf = inp[f"lambda_self.{l}"], inp[f"lambda_first.{l}"]
            if cfg["lambda_granularity"] == "head":
                ls, lf = ls[None, :, None], lf[None, :, None]
            v = lf * v0 + ls * v
        o, lse = attention(inp[f"q.{l}"], inp[f"k.{l}"], v, mask, _scale(cfg))
        out[f"out.{l}"] = o
        aux[f"lse.{l}"] = lse
    return out, aux


def fwd_svformer(inp, cfg):
    mask = build_mask(cfg)
    out, aux = {}, {}
    for l in range(cfg["num_layers"]):
        o, lse = attention(inp[f"q.{l}"], inp[f"k.{l}"], inp["v.0"], mask, _scale(cfg))
        out[f"out.{l}"] = o
        aux[f"lse.{l}"] = lse
    return out, aux


EXO_STREAMS = ("q", "k", "v", "g")
EXO_SCOLS = {"q": (0, 1), "k": (2, 3), "v": (4, 5), "g": (6, 7)}


def _exo_lambda_view(lam, gran):
    # ExoFormer MultiHeadAttention._get_lambda_views (token-major layout [N, H, d] here)
    if gran == "elementwise":
        return lam[None, :, :]
    if gran == "head":
        return lam[None, :, None]
    return lam


def fwd_exoformer(inp, cfg):
    """ExoFormer model.py MultiHeadAttention.forward / _apply_gating with decoupled, normalised anchors
    (OBPM: anchor_X_norm(anchor)): lambda1 = lambda1 * s1; lambda2 = lambda2 * s2;
    P = lambda1 * anc + lambda2 * P; q_norm(q), k_norm(k); RoPE(q, k); SDPA; O * sigmoid(g_mixed)."""
    mask = build_mask(cfg)
    pos = _pos(cfg)
    gran = cfg["lambda_granularity"]
    anc = {p: rmsnorm(inp[f"anchor_{p}"], inp[f"gamma_anchor_{p}"], cfg["anchor_eps"]) for p in EXO_STREAMS}
    out, aux = {}, {}
    for l in range(cfg["num_layers"]):
        mixed = {}
        for p in EXO_STREAMS:
            l1 = _exo_lambda_view(inp[f"lambda1_{p}.{l}"], gran)
            l2 = _exo_lambda_view(inp[f"lambda2_{p}.{l}"], gran)
            if cfg["dynamic"]:
                s = inp[f"s.{l}"]
                c1, c2 = EXO_SCOLS[p]
                l1 = l1 * s[:, c1][:, None, None]
                l2 = l2 * s[:, c2][:, None, None]
            mixed[p] = l1 * anc[p] + l2 * inp[f"{p}.{l}"]
        q = rmsnorm(mixed["q"], inp[f"gamma_q.{l}"], cfg["norm_eps"])
        k = rmsnorm(mixed["k"], inp[f"gamma_k.{l}"], cfg["norm_eps"])
        if cfg["rope"]:
            q = rope(q, pos, cfg["rope_theta"])
            k = rope(k, pos, cfg["rope_theta"])
        o, lse = attention(q, k, mixed["v"], mask, _scale(cfg))
        out[f"out.{l}"] = o * jax.nn.sigmoid(mixed["g"])
        aux[f"lse.{l}"] = lse
    return out, aux


def fwd_mea(inp, cfg):
    """MEA / HLC (SPEC §4, §7.5): K'[h] = sum_c A^K[c,h] K_c[c], V' likewise; site kv: head GroupNorm on
    K', V'; RoPE on q and K' (after GN); attention; site output: GroupNorm on O."""
    mask = build_mask(cfg)
    pos = _pos(cfg)
    eps = cfg["gn_eps"]
    site = cfg["site"]
    out, aux = {}, {}
    for l in range(cfg["num_layers"]):
        q = inp[f"q.{l}"]
        kp = jnp.einsum("ncd,ch->nhd", inp[f"kc.{l}"], inp[f"a_k.{l}"])
        vp = jnp.einsum("ncd,ch->nhd", inp[f"vc.{l}"], inp[f"a_v.{l}"])
        if site == "kv":
            kp = groupnorm_head(kp, inp[f"gn_gamma_k.{l}"], inp[f"gn_beta_k.{l}"], eps)
            vp = groupnorm_head(vp, inp[f"gn_gamma_v.{l}"], inp[f"gn_beta_v.{l}"], eps)
        if cfg["rope"]:
            q = rope(q, pos, cfg["rope_theta"])
            kp = rope(kp, pos, cfg["rope_theta"])
        o, lse = attention(q, kp, vp, mask, _scale(cfg))
        if site == "output":
            o = groupnorm_head(o, inp[f"gn_gamma_o.{l}"], inp[f"gn_beta_o.{l}"], eps)
        out[f"out.{l}"] = o
        aux[f"lse.{l}"] = lse
    return out, aux


def fwd_gated(inp, cfg):
    """gated_attention modeling_qwen3.py Qwen3Attention.forward: q_norm, k_norm (before RoPE), RoPE,
    SDPA, attn_output * sigmoid(gate_score) (headwise: one gate per head, broadcast over d)."""
    mask = build_mask(cfg)
    pos = _pos(cfg)
    out, aux = {}, {}
    for l in range(cfg["num_layers"]):
        q, k, v, g = inp[f"q.{l}"], inp[f"k.{l}"], inp[f"v.{l}"], inp[f"g.{l}"]
        if cfg["qk_norm"]:
            q = rmsnorm(q, inp[f"gamma_q.{l}"], cfg["norm_eps"])
            k = rmsnorm(k, inp[f"gamma_k.{l}"], cfg["norm_eps"])
        if cfg["rope"]:
            q = rope(q, pos, cfg["rope_theta"])
            k = rope(k, pos, cfg["rope_theta"])
        o, lse = attention(q, k, v, mask, _scale(cfg))
        if cfg["gate"] == "headwise":
            g = g[:, :, None]
        out[f"out.{l}"] = o * jax.nn.sigmoid(g)
        aux[f"lse.{l}"] = lse
    return out, aux


METHODS = {
    "vanilla": fwd_vanilla,
    "depth": fwd_depth,
    "resformer": fwd_resformer,
    "svformer": fwd_svformer,
    "exoformer": fwd_exoformer,
    "mea": fwd_mea,
    "gated": fwd_gated,
}

# ----------------------------------------------------------------------------------------------------
# Expected tensor names and shapes (the oracle's own reading of CONTRACT.md, used to check the dump)
# ----------------------------------------------------------------------------------------------------


def expected_inputs(cfg):
    """{name: shape} of every differentiable input for this config, per CONTRACT.md."""
    m = cfg["method"]
    L, H, Hkv, d = cfg["num_layers"], cfg["num_heads"], cfg["num_kv_heads"], cfg["head_dim"]
    nq = int(cfg["cu_seqlens_q"][-1])
    nk = int(cfg["cu_seqlens_k"][-1])
    e = {}
    for l in range(L):
        if m == "vanilla":
            e.update({f"q.{l}": (nq, H, d), f"k.{l}": (nk, Hkv, d), f"v.{l}": (nk, Hkv, d)})
        elif m in ("depth", "gated"):
            e.update({f"q.{l}": (nq, H, d), f"k.{l}": (nq, Hkv, d), f"v.{l}": (nq, Hkv, d)})
            if cfg["qk_norm"]:
                e.update({f"gamma_q.{l}": (d,), f"gamma_k.{l}": (d,)})
            if m == "gated":
                e[f"g.{l}"] = (nq, H, d) if cfg["gate"] == "elementwise" else (nq, H)
        elif m == "resformer":
            e.update({f"q.{l}": (nq, H, d), f"k.{l}": (nq, Hkv, d), f"v.{l}": (nq, Hkv, d)})
            if l >= 1:
                shp = () if cfg["lambda_granularity"] == "scalar" else (Hkv,)
                e.update({f"lambda_self.{l}": shp, f"lambda_first.{l}": shp})
        elif m == "svformer":
            e.update({f"q.{l}": (nq, H, d), f"k.{l}": (nq, Hkv, d)})
            if l == 0:
                e["v.0"] = (nq, Hkv, d)
        elif m == "exoformer":
            for p in EXO_STREAMS:
                hp = H if p in ("q", "g") else Hkv
                e[f"{p}.{l}"] = (nq, hp, d)
                shp = {"elementwise": (hp, d), "head": (hp,), "scalar": ()}[cfg["lambda_granularity"]]
                e[f"lambda1_{p}.{l}"] = shp
                e[f"lambda2_{p}.{l}"] = shp
            e.update({f"gamma_q.{l}": (d,), f"gamma_k.{l}": (d,)})
            if cfg["dynamic"]:
                e[f"s.{l}"] = (nq, 8)
        elif m == "mea":
            hc = cfg["num_component_heads"]
            e.update({f"q.{l}": (nq, H, d), f"kc.{l}": (nq, hc, d), f"vc.{l}": (nq, hc, d),
                      f"a_k.{l}": (hc, Hkv), f"a_v.{l}": (hc, Hkv)})
            if cfg["site"] == "kv":
                for n in ("gn_gamma_k", "gn_beta_k", "gn_gamma_v", "gn_beta_v"):
                    e[f"{n}.{l}"] = (Hkv, d)
            else:
                for n in ("gn_gamma_o", "gn_beta_o"):
                    e[f"{n}.{l}"] = (H, d)
        else:
            raise ValueError(f"unknown method {m}")
    if m == "exoformer":
        for p in EXO_STREAMS:
            hp = H if p in ("q", "g") else Hkv
            e[f"anchor_{p}"] = (nq, hp, d)
            e[f"gamma_anchor_{p}"] = (d,)
    return e


def expected_outputs(cfg):
    return [f"out.{l}" for l in range(cfg["num_layers"])]


def expected_aux(cfg):
    L = cfg["num_layers"]
    if cfg["method"] == "depth":
        return [f"{n}.{l}" for l in range(L) for n in ("khat", "vhat", "lse")]
    return [f"lse.{l}" for l in range(L)]


# ----------------------------------------------------------------------------------------------------
# Evaluation and comparison
# ----------------------------------------------------------------------------------------------------


def make_evaluator(cfg):
    """Jitted (inputs, douts) -> (loss, outputs, aux, grads), loss = sum_l sum(out.l * dout.l) and
    grads = d loss / d inputs. One XLA compilation per config."""
    fwd = METHODS[cfg["method"]]

    def loss_fn(x, jd):
        outs, aux = fwd(x, cfg)
        loss = sum(jnp.sum(outs[n] * jd["d" + n]) for n in outs)
        return loss, (outs, aux)

    vg = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))

    def run(inputs, douts):
        jin = {k: np.asarray(v, dtype=np.float64) for k, v in inputs.items()}
        jd = {k: np.asarray(v, dtype=np.float64) for k, v in douts.items()}
        (loss, (outs, aux)), grads = vg(jin, jd)
        to_np = lambda d: {k: np.asarray(v) for k, v in d.items()}  # noqa: E731
        return float(loss), to_np(outs), to_np(aux), to_np(grads)
    return run


def evaluate(cfg, inputs, douts):
    """Runs the method; returns (outputs, aux, grads) as numpy float64 arrays."""
    _, outs, aux, grads = make_evaluator(cfg)(inputs, douts)
    return outs, aux, grads


def analytically_zero(cfg):
    """Gradient tensors that are exactly zero in exact arithmetic, whose computed values are rounding
    noise on both sides (so the relative rule of CONTRACT.md is meaningless for them):
    - mea, site kv, no RoPE: grad.gn_beta_k.l. beta_k adds the same vector to every key of a head, which
      adds q.beta_k to every score of a row, and the softmax is invariant to that."""
    if cfg["method"] == "mea" and cfg["site"] == "kv" and not cfg["rope"]:
        return {f"grad.gn_beta_k.{l}" for l in range(cfg["num_layers"])}
    return set()


def rel_err(ref, ora):
    """CONTRACT.md: max|ref - oracle| / max(max|oracle|, 1e-30); equal infinities are equal.
    The scale max|oracle| is taken over the finite entries (an LSE row of -inf must not make every
    error vanish). A NaN on either side, a shape mismatch or unequal infinities give inf."""
    ref = np.asarray(ref, dtype=np.float64)
    ora = np.asarray(ora, dtype=np.float64)
    if ref.shape != ora.shape:
        return float("inf")
    if np.isnan(ref).any() or np.isnan(ora).any():
        return float("inf")
    if ref.size == 0:
        return 0.0
    inf_r, inf_o = np.isinf(ref), np.isinf(ora)
    if (inf_r != inf_o).any() or (ref[inf_o] != ora[inf_o]).any():
        return float("inf")
    fin = ~inf_o
    if not fin.any():
        return 0.0
    scale = max(float(np.max(np.abs(ora[fin]))), 1e-30)
    return float(np.max(np.abs(ref[fin] - ora[fin]))) / scale


def check_config(cfg):
    """Contract checks on the config itself; returns a list of problems."""
    probs = []
    L = cfg["num_layers"]
    if cfg["num_heads"] % cfg["num_kv_heads"]:
        probs.append("num_heads % num_kv_heads != 0")
    if cfg["head_dim"] % 2:
        probs.append("head_dim is odd")
    if cfg["method"] != "vanilla" and list(cfg["cu_seqlens_q"]) != list(cfg["cu_seqlens_k"]):
        probs.append("cu_seqlens_k differs from cu_seqlens_q for a method other than vanilla")
    if cfg["method"] == "depth":
        src = cfg["sources"]
        if len(src) != L:
            probs.append(f"sources has {len(src)} entries, expected {L}")
        for l, s in enumerate(src):
            if list(s) != sorted(set(s)) or any(j < 0 or j >= l for j in s):
                probs.append(f"sources[{l}] = {s} is not an ascending list of earlier layers")
        stride = int(cfg.get("stride", 0) or 0)
        if stride > 0:
            want = depth_sources_from_rule(L, stride, int(cfg.get("recent_window", 0) or 0))
            if [list(s) for s in src] != want:
                probs.append(f"sources {src} differ from the stride/recent_window rule {want}")
    return probs


def load_case(case_dir):
    with open(os.path.join(case_dir, "config.json")) as f:
        cfg = json.load(f)

    def ld(name):
        return np.load(os.path.join(case_dir, name + ".npy"), allow_pickle=False)

    return cfg, ld


def compare(case_dir, verbose=True):
    """Loads a case directory, recomputes with the oracle, compares every output, aux and gradient
    tensor and prints a per-tensor table. Returns the max err (inf on any contract violation)."""
    cfg, ld = load_case(case_dir)
    problems = check_config(cfg)
    exp_in = expected_inputs(cfg)
    if sorted(cfg["inputs"]) != sorted(exp_in):
        problems.append(f"inputs {sorted(cfg['inputs'])} != expected {sorted(exp_in)}")
    if sorted(cfg["outputs"]) != sorted(expected_outputs(cfg)):
        problems.append(f"outputs {cfg['outputs']} != expected {expected_outputs(cfg)}")
    if sorted(cfg["aux"]) != sorted(expected_aux(cfg)):
        problems.append(f"aux {cfg['aux']} != expected {expected_aux(cfg)}")
    inputs, douts = {}, {}
    for n in exp_in:
        a = ld(n)
        if a.dtype != np.float64:
            problems.append(f"{n}.npy has dtype {a.dtype}")
        if tuple(a.shape) != tuple(exp_in[n]):
            problems.append(f"{n}.npy has shape {a.shape}, expected {exp_in[n]}")
        inputs[n] = a.astype(np.float64)
    for n in expected_outputs(cfg):
        douts["d" + n] = ld("d" + n).astype(np.float64)
    if problems:
        for p in problems:
            print(f"  CONTRACT: {p}")
        return float("inf")
    outs, aux, grads = evaluate(cfg, inputs, douts)
    rows = []
    for n in expected_outputs(cfg):
        rows.append((n, ld(n), outs[n]))
    for n in expected_aux(cfg):
        rows.append((n, ld(n), aux[n]))
    for n in exp_in:
        rows.append(("grad." + n, ld("grad." + n), grads[n]))
    worst = 0.0
    zero = analytically_zero(cfg)
    gscale = max([float(np.max(np.abs(g))) for g in grads.values() if g.size] + [1e-30])
    if verbose:
        print(f"  {'tensor':<24} {'shape':<16} {'max|oracle|':>12} {'err':>10}")
    for name, ref, ora in rows:
        if name in zero:
            # compared absolutely against the largest gradient of the case; the oracle's own value must
            # be rounding noise too
            e = max(float(np.max(np.abs(np.asarray(ref) - ora), initial=0.0)),
                    float(np.max(np.abs(ora), initial=0.0))) / gscale
            if np.shape(ref) != np.shape(ora) or np.isnan(ref).any():
                e = float("inf")
            name += " (=0)"
        else:
            e = rel_err(ref, ora)
        worst = max(worst, e)
        if verbose:
            fin = np.isfinite(ora)
            mx = float(np.max(np.abs(ora[fin]))) if fin.any() else 0.0
            flag = "" if e <= TOLERANCE else "  <-- FAIL"
            print(f"  {name:<24} {str(tuple(np.shape(ref))):<16} {mx:12.4e} {e:10.2e}{flag}")
    return worst
