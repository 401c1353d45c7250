#!/usr/bin/env python3
"""Runs the autodiff oracle against the fp64 C++ reference, or checks the oracle by itself.

  run_oracle.py --dump PATH/strata_reference_dump --method M   # cases of method M (or "all")
  run_oracle.py --selftest                                     # no C++ needed

Each case runs `strata_reference_dump --method M --seed S --out DIR [options]` into a temporary
directory, then oracle.compare(DIR). One line per case with its max err; exit status 1 if any err
exceeds 1e-9 or anything fails.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("JAX_ENABLE_X64", "1")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
try:
    import numpy as np
    import jax  # noqa: F401  (importable: checked here, used by oracle)
    import jax.numpy as jnp
except ImportError as exc:  # never skip silently
    print(f"run_oracle: FAIL: cannot import jax/numpy with {sys.executable}: {exc}\n"
          f"  run scripts/install_python_deps.sh and configure with -DSTRATA_PYTHON=<venv>/bin/python",
          file=sys.stderr)
    sys.exit(2)

import oracle  # noqa: E402

# ----------------------------------------------------------------------------------------------------
# Case list. Each case: (method, seed, {dump option: value}). Option names are the dump tool's flags
# without the leading "--" (see dump_command()).
# ----------------------------------------------------------------------------------------------------

VARLEN = "5,0,1,7"          # four sequences: one empty, one of length 1


def _cases():
    c = []

    def add(method, seed, **opts):
        c.append((method, seed, opts))

    # vanilla: causal / non-causal / window / GQA / MQA / varlen with an empty sequence, Tq != Tk,
    # fully masked rows (causal bottom-right with Tq > Tk; window)
    add("vanilla", 1, layers=1, heads=2, kv_heads=2, head_dim=8, seqlens="9", causal=1)
    add("vanilla", 2, layers=1, heads=2, kv_heads=2, head_dim=8, seqlens="9", causal=0)
    add("vanilla", 3, layers=1, heads=4, kv_heads=2, head_dim=8, seqlens=VARLEN, causal=1, window_left=2)
    add("vanilla", 4, layers=2, heads=4, kv_heads=1, head_dim=16, seqlens=VARLEN, causal=1)
    add("vanilla", 5, layers=1, heads=4, kv_heads=4, head_dim=8, seqlens=VARLEN, causal=0, window_left=1)
    add("vanilla", 6, layers=1, heads=4, kv_heads=2, head_dim=8, seqlens_q="6,0,3,4",
        seqlens_k="3,2,0,7", causal=1)
    add("vanilla", 7, layers=1, heads=2, kv_heads=1, head_dim=8, seqlens_q="6,0,3,4",
        seqlens_k="3,2,0,7", causal=1, window_left=1)
    add("vanilla", 8, layers=1, heads=8, kv_heads=1, head_dim=4, seqlens_q="4,5", seqlens_k="8,2",
        causal=0, window_left=0)
    add("vanilla", 9, layers=1, heads=4, kv_heads=2, head_dim=8, seqlens="9,4", causal=1, scale=20)
    add("vanilla", 10, layers=1, heads=4, kv_heads=2, head_dim=8, seqlens_q="2,3", seqlens_k="0,0")  # no keys
    add("vanilla", 11, layers=1, heads=4, kv_heads=2, head_dim=8, seqlens_q="0,0", seqlens_k="3,0")  # no queries
    # depth: stride 2 + recent window 1 with L=5, explicit sources, GQA G=1,2,4, qk_norm / rope on/off
    add("depth", 11, layers=5, heads=2, kv_heads=2, head_dim=8, seqlens=VARLEN, stride=2, recent_window=1,
        qk_norm=1, rope=1)
    add("depth", 12, layers=5, heads=4, kv_heads=2, head_dim=8, seqlens=VARLEN, stride=2, recent_window=1,
        qk_norm=1, rope=1)
    add("depth", 13, layers=4, heads=4, kv_heads=1, head_dim=8, seqlens="6,3", stride=2, recent_window=0,
        qk_norm=0, rope=1)
    add("depth", 14, layers=4, heads=4, kv_heads=2, head_dim=8, seqlens=VARLEN, sources="|0|0,1|1",
        qk_norm=1, rope=0)
    add("depth", 15, layers=3, heads=2, kv_heads=1, head_dim=8, seqlens="7", stride=1, recent_window=0,
        qk_norm=0, rope=0, causal=0)
    add("depth", 16, layers=6, heads=8, kv_heads=2, head_dim=16, seqlens="4,0,5", stride=3,
        recent_window=2, qk_norm=1, rope=1, window_left=2)
    add("depth", 17, layers=5, heads=4, kv_heads=2, head_dim=8, seqlens="6,0,3", stride=4, recent_window=0,
        qk_norm=1, rope=1, rope_theta=500000, norm_eps=1e-5)
    # the depth mix always scales by 1/sqrt(d), whatever the sequence-attention scale
    add("depth", 18, layers=3, heads=4, kv_heads=2, head_dim=8, seqlens="6,0,3", stride=1, recent_window=0,
        qk_norm=1, rope=1, scale=0.9)
    # resformer: scalar / head lambdas
    add("resformer", 21, layers=3, heads=4, kv_heads=2, head_dim=8, seqlens=VARLEN, lambda_granularity="scalar")
    add("resformer", 22, layers=3, heads=4, kv_heads=2, head_dim=8, seqlens=VARLEN, lambda_granularity="head")
    add("resformer", 23, layers=2, heads=2, kv_heads=2, head_dim=8, seqlens="8", lambda_granularity="head",
        causal=0)
    # svformer
    add("svformer", 31, layers=3, heads=4, kv_heads=2, head_dim=8, seqlens=VARLEN)
    add("svformer", 32, layers=2, heads=2, kv_heads=1, head_dim=8, seqlens="6", causal=0, window_left=1)
    # exoformer: static / dynamic x 3 granularities x rope
    seed = 40
    for dyn in (0, 1):
        for gran in ("elementwise", "head", "scalar"):
            for rp in (0, 1):
                seed += 1
                kv = 2 if seed % 2 else 4
                add("exoformer", seed, layers=2, heads=4, kv_heads=kv, head_dim=8, seqlens=VARLEN,
                    dynamic=dyn, lambda_granularity=gran, rope=rp)
    add("exoformer", 53, layers=3, heads=4, kv_heads=2, head_dim=8, seqlens="6,0,3", dynamic=1,
        lambda_granularity="elementwise", rope=1, rope_theta=500000, norm_eps=1e-5, anchor_eps=1e-5)
    # mea: site kv / output x H_c = H_kv and H_c = H_kv / 2
    seed = 60
    for site in ("kv", "output"):
        for hc in (4, 2):
            for rp in (1, 0):
                seed += 1
                add("mea", seed, layers=2, heads=4, kv_heads=4, head_dim=8, seqlens=VARLEN,
                    num_component_heads=hc, site=site, rope=rp)
    add("mea", 69, layers=1, heads=4, kv_heads=2, head_dim=8, seqlens="6", num_component_heads=1,
        site="kv", rope=1)
    add("mea", 70, layers=2, heads=4, kv_heads=2, head_dim=8, seqlens="6,0,3", num_component_heads=2,
        site="output", rope=1, rope_theta=500000, gn_eps=1e-3)
    # gated: elementwise / headwise x qk_norm x rope
    seed = 80
    for gate in ("elementwise", "headwise"):
        for qkn in (1, 0):
            for rp in (1, 0):
                seed += 1
                add("gated", seed, layers=2, heads=4, kv_heads=2, head_dim=8, seqlens=VARLEN, gate=gate,
                    qk_norm=qkn, rope=rp)
    add("gated", 89, layers=1, heads=2, kv_heads=2, head_dim=8, seqlens="7", gate="elementwise", qk_norm=1,
        rope=1, causal=0, window_left=2)
    add("gated", 90, layers=2, heads=8, kv_heads=2, head_dim=16, seqlens="6,0,3", gate="headwise", qk_norm=1,
        rope=1, rope_theta=500000, norm_eps=1e-5)
    return c


CASES = _cases()
METHOD_NAMES = list(oracle.METHODS)


def dump_command(dump, method, seed, opts, out):
    cmd = [dump, "--method", method, "--seed", str(seed), "--out", out]
    for k, v in opts.items():
        cmd += ["--" + k.replace("_", "-"), str(v)]
    return cmd


OPTION_KEYS = {"layers": "num_layers", "heads": "num_heads", "kv_heads": "num_kv_heads", "head_dim": "head_dim",
               "num_component_heads": "num_component_heads"}


def option_mismatches(opts, cfg):
    """The dump must have honoured every option of the case (else the case does not cover what it says)."""
    bad = []

    def want(key, value, got):
        if isinstance(value, float) or isinstance(got, float):
            ok = abs(float(value) - float(got)) <= 1e-12 * abs(float(value))
        elif isinstance(got, bool):
            ok = bool(int(value)) == got
        else:
            ok = value == got
        if not ok:
            bad.append(f"option {key}={value!r} but config.json has {got!r}")

    for k, v in opts.items():
        if k in ("seqlens", "seqlens_q", "seqlens_k"):
            ck = "cu_seqlens_k" if k == "seqlens_k" else "cu_seqlens_q"
            want(k, _cu(int(x) for x in v.split(",")), list(cfg.get(ck, [])))
        elif k == "sources":
            lists = [[int(j) for j in part.split(",") if j] for part in v.split("|")]
            want(k, lists, [list(x) for x in cfg.get("sources", [])])
        elif k == "scale":
            want(k, float(v), cfg.get("softmax_scale"))
        elif k in OPTION_KEYS:
            want(k, v, cfg.get(OPTION_KEYS[k]))
        else:
            want(k, v, cfg.get(k))
    return bad


def run_cases(dump, methods, keep=False, verbose=False):
    failures = 0
    worst = (0.0, None)
    per_method = {}
    t0 = time.time()
    for method, seed, opts in CASES:
        if method not in methods:
            continue
        label = f"{method} seed={seed} " + " ".join(f"{k}={v}" for k, v in opts.items())
        tmp = tempfile.mkdtemp(prefix=f"oracle_{method}_{seed}_")
        cmd = dump_command(dump, method, seed, opts, tmp)
        t = time.time()
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        except Exception as exc:  # noqa: BLE001
            print(f"FAIL  {label}: dump did not run: {exc}")
            failures += 1
            continue
        if r.returncode != 0:
            print(f"FAIL  {label}: dump exited {r.returncode}\n  cmd: {' '.join(cmd)}\n  {r.stderr.strip()}")
            failures += 1
            continue
        try:
            with open(os.path.join(tmp, "config.json")) as f:
                mism = option_mismatches(opts, json.load(f))
        except Exception as exc:  # noqa: BLE001
            mism = [f"cannot read config.json: {exc}"]
        if mism:
            print(f"FAIL  {label}: " + "; ".join(mism) + f"\n  case kept in {tmp}")
            failures += 1
            continue
        try:
            import io
            import contextlib
            buf = io.StringIO()
            with contextlib.redirect_stdout(buf):
                err = oracle.compare(tmp, verbose=True)
            table = buf.getvalue()
        except Exception as exc:  # noqa: BLE001
            import traceback
            print(f"FAIL  {label}: oracle raised {type(exc).__name__}: {exc}")
            traceback.print_exc(file=sys.stdout)
            failures += 1
            continue
        ok = err <= oracle.TOLERANCE
        print(f"{'ok  ' if ok else 'FAIL'}  max err {err:9.2e}  {time.time() - t:5.2f}s  {label}")
        if verbose or not ok:
            print(table, end="")
            if not ok:
                print(f"  case kept in {tmp}")
        if not ok:
            failures += 1
        elif not keep:
            _rmtree(tmp)
        per_method[method] = max(per_method.get(method, 0.0), err)
        if err >= worst[0]:
            worst = (err, label)
    ran = sum(1 for m, _, _ in CASES if m in methods)
    print(f"\n{ran} cases, {failures} failed, {time.time() - t0:.1f}s")
    for m, e in per_method.items():
        print(f"  largest discrepancy {m:<10} {e:9.2e}")
    print(f"largest discrepancy seen: {worst[0]:.3e} ({worst[1]})")
    return 1 if failures or ran == 0 else 0


def _rmtree(path):
    for name in os.listdir(path):
        os.remove(os.path.join(path, name))
    os.rmdir(path)


# ----------------------------------------------------------------------------------------------------
# Self-test: needs no C++.
# ----------------------------------------------------------------------------------------------------


def _cu(lens):
    cu = [0]
    for n in lens:
        cu.append(cu[-1] + n)
    return cu


def make_config(method, L=2, H=4, Hkv=2, d=8, lens_q=(5, 0, 7), lens_k=None, causal=True, window_left=-1,
                **kw):
    cfg = dict(method=method, num_layers=L, num_heads=H, num_kv_heads=Hkv, head_dim=d,
               cu_seqlens_q=_cu(lens_q), cu_seqlens_k=_cu(lens_k if lens_k is not None else lens_q),
               causal=causal, window_left=window_left, softmax_scale=1.0 / np.sqrt(d),
               qk_norm=True, rope=True, rope_theta=10000.0, norm_eps=1e-6)
    if method == "depth":
        cfg.update(stride=kw.pop("stride", 2), recent_window=kw.pop("recent_window", 0))
        cfg["sources"] = kw.pop("sources", None) or oracle.depth_sources_from_rule(L, cfg["stride"],
                                                                                 cfg["recent_window"])
    if method == "resformer":
        cfg["lambda_granularity"] = "scalar"
    if method == "exoformer":
        cfg.update(dynamic=True, lambda_granularity="elementwise", anchor_eps=1e-6)
    if method == "mea":
        cfg.update(num_component_heads=Hkv, site="kv", gn_eps=1e-5)
    if method == "gated":
        cfg["gate"] = "elementwise"
    cfg.update(kw)
    cfg["inputs"] = list(oracle.expected_inputs(cfg))
    cfg["outputs"] = oracle.expected_outputs(cfg)
    cfg["aux"] = oracle.expected_aux(cfg)
    return cfg


def random_inputs(cfg, seed):
    rng = np.random.default_rng(seed)
    inp = {}
    for n, shp in oracle.expected_inputs(cfg).items():
        base = n.split(".")[0]
        if base.startswith("gamma") or base.startswith("gn_gamma"):
            inp[n] = 1.0 + 0.2 * rng.standard_normal(shp)
        elif base.startswith("lambda"):
            inp[n] = 0.5 + 0.3 * rng.standard_normal(shp)
        elif base == "s":
            inp[n] = rng.uniform(0.1, 0.9, shp)
        else:
            inp[n] = rng.standard_normal(shp)
    douts = {"d" + n: rng.standard_normal(_out_shape(cfg)) for n in oracle.expected_outputs(cfg)}
    return inp, douts


def _out_shape(cfg):
    return (cfg["cu_seqlens_q"][-1], cfg["num_heads"], cfg["head_dim"])


class SelfTest:
    def __init__(self):
        self.fails = 0
        self.n = 0

    def check(self, name, err, tol):
        self.n += 1
        ok = bool(err <= tol)
        if not ok:
            self.fails += 1
        print(f"{'ok  ' if ok else 'FAIL'}  {name:<62} err {err:9.2e} (tol {tol:.0e})")


def fd_check(st, name, cfg, seed, ndir=3):
    """Directional finite differences (central, fourth order) against jax's gradient."""
    inp, douts = random_inputs(cfg, seed)
    ev = oracle.make_evaluator(cfg)
    _, outs, aux, grads = ev(inp, douts)
    loss = lambda x: ev(x, douts)[0]  # noqa: E731
    bad = [k for k, v in list(grads.items()) + list(outs.items()) if np.isnan(v).any()]
    st.check(f"{name}: no NaN in outputs/grads", float(len(bad)), 0)
    rng = np.random.default_rng(seed + 1000)
    worst = 0.0
    for _ in range(ndir):
        dirs = {k: rng.standard_normal(v.shape) for k, v in inp.items()}
        h = 1e-3
        f = {}
        for m in (-2, -1, 1, 2):
            f[m] = loss({k: inp[k] + m * h * dirs[k] for k in inp})
        fd = (-f[2] + 8 * f[1] - 8 * f[-1] + f[-2]) / (12 * h)
        an = sum(float(np.sum(grads[k] * dirs[k])) for k in inp)
        worst = max(worst, abs(fd - an) / max(abs(an), 1e-12))
    st.check(f"{name}: jax grad vs finite differences", worst, 1e-7)
    # per-element check on small parameter tensors (lambdas, gammas, mixing matrices): up to 3 random
    # elements of each, so that a wrong reduction axis cannot hide in a directional derivative
    worst = 0.0
    checked = 0
    for k in inp:
        if inp[k].size <= 32 and k.split(".")[0] != "s":
            gk = grads[k].ravel()
            idx = rng.choice(gk.size, size=min(3, gk.size), replace=False)
            for i in idx:
                checked += 1
                vals = {}
                for m in (-2, -1, 1, 2):
                    x = dict(inp)
                    xi = inp[k].copy().ravel()
                    xi[i] += m * 1e-3
                    x[k] = xi.reshape(inp[k].shape)
                    vals[m] = loss(x)
                fdk = (-vals[2] + 8 * vals[1] - 8 * vals[-1] + vals[-2]) / 12e-3
                worst = max(worst, abs(fdk - gk[i]) / max(np.max(np.abs(gk)), 1e-12))
    if checked:
        st.check(f"{name}: per-element FD on {checked} parameter elements", worst, 1e-7)


def numpy_attention(q, k, v, cfg):
    """Per-sequence loops, independent of build_mask/attention()."""
    cu_q, cu_k = cfg["cu_seqlens_q"], cfg["cu_seqlens_k"]
    H, Hkv = q.shape[1], k.shape[1]
    G = H // Hkv
    o = np.zeros(q.shape)
    lse = np.full((q.shape[0], H), -np.inf)
    for b in range(len(cu_q) - 1):
        tq, tk = cu_q[b + 1] - cu_q[b], cu_k[b + 1] - cu_k[b]
        off = tk - tq
        for i in range(tq):
            js = [j for j in range(tk)
                  if (not cfg["causal"] or j <= i + off) and (cfg["window_left"] < 0 or j >= i + off - cfg["window_left"])]
            if not js:
                continue
            for h in range(H):
                s = np.array([cfg["softmax_scale"] * q[cu_q[b] + i, h] @ k[cu_k[b] + j, h // G] for j in js])
                mx = s.max()
                p = np.exp(s - mx)
                lse[cu_q[b] + i, h] = mx + np.log(p.sum())
                p /= p.sum()
                o[cu_q[b] + i, h] = sum(p[t] * v[cu_k[b] + j, h // G] for t, j in enumerate(js))
    return o, lse


def np_rms(x, g, eps):
    return g * x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps)


def np_rope(x, pos, theta):
    d = x.shape[-1]
    y = np.empty_like(x)
    for n in range(x.shape[0]):
        for i in range(d // 2):
            a = pos[n] * theta ** (-2.0 * i / d)
            y[n, :, i] = x[n, :, i] * np.cos(a) - x[n, :, i + d // 2] * np.sin(a)
            y[n, :, i + d // 2] = x[n, :, i + d // 2] * np.cos(a) + x[n, :, i] * np.sin(a)
    return y


def selftest():
    st = SelfTest()
    t0 = time.time()
    # -- source rule
    got = oracle.depth_sources_from_rule(5, 2, 1)
    st.check("depth sources L=5 stride 2 recent 1", 0.0 if got == [[], [0], [0, 1], [0, 2], [0, 2, 3]] else 1.0, 0)
    got = oracle.depth_sources_from_rule(48, 24, 0)
    st.check("depth sources 3B config (s=24)", 0.0 if got[47] == [0, 24] and got[24] == [0] else 1.0, 0)
    # -- mask, bottom-right
    cfg = make_config("vanilla", lens_q=(2,), lens_k=(4,), causal=True, window_left=1)
    want = np.array([[0, 1, 1, 0], [0, 0, 1, 1]], bool)
    st.check("mask causal bottom-right + window", float((oracle.build_mask(cfg) != want).sum()), 0)
    cfg = make_config("vanilla", lens_q=(3, 1), lens_k=(1, 2), causal=True)
    want = np.zeros((4, 3), bool)
    want[2, 0] = True
    want[3, 1:3] = True
    st.check("mask varlen Tq > Tk (empty rows)", float((oracle.build_mask(cfg) != want).sum()), 0)
    # -- RoPE against a loop implementation
    rng = np.random.default_rng(0)
    x = rng.standard_normal((7, 3, 8))
    pos = np.arange(7) * 3
    st.check("rope vs loop implementation",
             oracle.rel_err(np.asarray(oracle.rope(jnp.asarray(x), pos, 500000.0)), np_rope(x, pos, 500000.0)),
             1e-14)
    # -- attention vs per-sequence loops (forward, LSE with empty rows)
    for lq, lk, causal, wl, H, Hkv in [((5, 0, 7), None, True, -1, 4, 2), ((5, 0, 7), None, False, 2, 4, 1),
                                       ((6, 0, 3, 4), (3, 2, 0, 7), True, -1, 4, 2),
                                       ((6, 0, 3, 4), (3, 2, 0, 7), True, 1, 2, 2),
                                       ((4, 5), (8, 2), False, 0, 8, 1)]:
        cfg = make_config("vanilla", L=1, H=H, Hkv=Hkv, lens_q=lq, lens_k=lk, causal=causal, window_left=wl)
        inp, douts = random_inputs(cfg, 7)
        o, lse = numpy_attention(inp["q.0"], inp["k.0"], inp["v.0"], cfg)
        outs, aux, grads = oracle.evaluate(cfg, inp, douts)
        nm = f"attention lq={lq} lk={lk} causal={causal} wl={wl} G={H // Hkv}"
        st.check(nm + " O", oracle.rel_err(o, outs["out.0"]), 1e-13)
        st.check(nm + " LSE", oracle.rel_err(lse, aux["lse.0"]), 1e-13)
        empty = np.isinf(lse).all(axis=1)
        z = float(np.abs(grads["q.0"][empty]).sum()) if empty.any() else 0.0
        st.check(nm + " empty rows: zero dq, no NaN",
                 z + float(sum(np.isnan(g).sum() for g in grads.values())), 0)
    # -- finite differences for every method and option
    fd_cases = [
        ("vanilla", make_config("vanilla", L=1, lens_q=(3, 0, 4), lens_k=(2, 1, 5), window_left=1)),
        ("depth s=2 r=1 L=5 G=2", make_config("depth", L=5, lens_q=(3, 0, 4), stride=2, recent_window=1)),
        ("depth no qk_norm no rope G=4", make_config("depth", L=3, H=4, Hkv=1, lens_q=(4, 3), qk_norm=False,
                                                     rope=False, stride=1)),
        ("depth explicit sources G=1", make_config("depth", L=4, H=2, Hkv=2, lens_q=(5,), stride=0,
                                                   sources=[[], [0], [0, 1], [1]])),
        ("resformer scalar", make_config("resformer", L=3, lens_q=(3, 0, 4))),
        ("resformer head", make_config("resformer", L=3, lens_q=(3, 0, 4), lambda_granularity="head")),
        ("svformer", make_config("svformer", L=3, lens_q=(3, 0, 4))),
        ("exoformer dynamic elementwise", make_config("exoformer", L=2, lens_q=(3, 0, 4))),
        ("exoformer static head", make_config("exoformer", L=2, lens_q=(3, 0, 4), dynamic=False,
                                              lambda_granularity="head")),
        ("exoformer dynamic scalar no rope", make_config("exoformer", L=2, lens_q=(3, 0, 4),
                                                         lambda_granularity="scalar", rope=False)),
        ("mea kv Hc=Hkv", make_config("mea", L=1, H=4, Hkv=4, lens_q=(3, 0, 4))),
        ("mea output Hc=Hkv/2", make_config("mea", L=1, H=4, Hkv=4, lens_q=(3, 0, 4), site="output",
                                            num_component_heads=2)),
        ("gated elementwise", make_config("gated", L=1, lens_q=(3, 0, 4))),
        ("gated headwise no qk_norm", make_config("gated", L=1, lens_q=(3, 0, 4), gate="headwise",
                                                  qk_norm=False)),
    ]
    for i, (nm, cfg) in enumerate(fd_cases):
        fd_check(st, nm, cfg, 100 + i)
    # -- identities
    def outs_of(cfg, inp):
        return oracle.evaluate(cfg, inp, random_inputs(cfg, 0)[1])

    # resformer with lambda_self = 1, lambda_first = 0 is vanilla; with 0 / 1 it is svformer
    cfg = make_config("resformer", L=3, lambda_granularity="head")
    inp, _ = random_inputs(cfg, 3)
    van = make_config("vanilla", L=3)
    for l in (1, 2):
        inp[f"lambda_self.{l}"] = np.ones(2)
        inp[f"lambda_first.{l}"] = np.zeros(2)
    o1 = outs_of(cfg, inp)[0]
    o2 = outs_of(van, {k: v for k, v in inp.items() if not k.startswith("lambda")})[0]
    st.check("resformer(l_self=1, l_first=0) == vanilla", max(oracle.rel_err(o1[n], o2[n]) for n in o1), 0)
    for l in (1, 2):
        inp[f"lambda_self.{l}"] = np.zeros(2)
        inp[f"lambda_first.{l}"] = np.ones(2)
    o1 = outs_of(cfg, inp)[0]
    sv = make_config("svformer", L=3)
    o2 = outs_of(sv, {k: v for k, v in inp.items() if k in sv["inputs"]})[0]
    st.check("resformer(l_self=0, l_first=1) == svformer", max(oracle.rel_err(o1[n], o2[n]) for n in o1), 0)
    # exoformer static lambda1 = 0, lambda2 = 1 is gated attention (elementwise, qk_norm, rope)
    cfg = make_config("exoformer", L=2, dynamic=False, lambda_granularity="head")
    inp, _ = random_inputs(cfg, 4)
    for k in list(inp):
        if k.startswith("lambda1_"):
            inp[k] = np.zeros_like(inp[k])
        if k.startswith("lambda2_"):
            inp[k] = np.ones_like(inp[k])
    ga = make_config("gated", L=2)
    o1 = outs_of(cfg, inp)[0]
    o2 = outs_of(ga, {k: v for k, v in inp.items() if k in ga["inputs"]})[0]
    st.check("exoformer(l1=0, l2=1) == gated", max(oracle.rel_err(o1[n], o2[n]) for n in o1), 0)
    # exoformer dynamic with s = 1 is static
    cfg = make_config("exoformer", L=2, lambda_granularity="scalar")
    inp, _ = random_inputs(cfg, 5)
    for l in range(2):
        inp[f"s.{l}"] = np.ones_like(inp[f"s.{l}"])
    cs = make_config("exoformer", L=2, lambda_granularity="scalar", dynamic=False)
    o1 = outs_of(cfg, inp)[0]
    o2 = outs_of(cs, {k: v for k, v in inp.items() if k in cs["inputs"]})[0]
    st.check("exoformer dynamic(s=1) == static", max(oracle.rel_err(o1[n], o2[n]) for n in o1), 0)
    # depth, one layer, gamma_k = 1: equals gated (k-norm before RoPE; RMS is rotation invariant) with a
    # saturated headwise gate (sigmoid(40) == 1 in float64)
    cfg = make_config("depth", L=1, H=4, Hkv=2)
    inp, _ = random_inputs(cfg, 6)
    inp["gamma_k.0"] = np.ones(8)
    ga = make_config("gated", L=1, H=4, Hkv=2, gate="headwise")
    gi = {k: v for k, v in inp.items()}
    gi["g.0"] = np.full((12, 4), 40.0)
    o1 = outs_of(cfg, inp)[0]
    o2 = outs_of(ga, gi)[0]
    st.check("depth L=1 (gamma_k=1) == gated(sigmoid=1)", oracle.rel_err(o1["out.0"], o2["out.0"]), 1e-14)
    # depth against an explicit numpy loop transcription (k-hat, v-hat and outputs)
    cfg = make_config("depth", L=5, H=4, Hkv=2, lens_q=(3, 0, 4), stride=2, recent_window=1)
    inp, _ = random_inputs(cfg, 8)
    outs, aux, _ = outs_of(cfg, inp)
    pos = oracle.token_positions(cfg["cu_seqlens_q"])[0]
    kh, vh = [], []
    worst = 0.0
    for l in range(5):
        q = np_rms(inp[f"q.{l}"], inp[f"gamma_q.{l}"], 1e-6)
        q = np_rope(q, pos, 1e4)
        k = np_rope(inp[f"k.{l}"], pos, 1e4)
        k = np_rms(k, inp[f"gamma_k.{l}"], 1e-6)
        v = inp[f"v.{l}"]
        out_v = np.zeros_like(v)
        for t in range(q.shape[0]):
            for g in range(2):
                qb = (q[t, 2 * g] + q[t, 2 * g + 1]) / 2
                cands = [(kh[j][t, g], vh[j][t, g]) for j in cfg["sources"][l]] + [(k[t, g], v[t, g])]
                z = np.array([qb @ kk / np.sqrt(8) for kk, _ in cands])
                a = np.exp(z - z.max())
                a /= a.sum()
                out_v[t, g] = sum(a[c] * cands[c][1] for c in range(len(cands)))
        kh.append(k)
        vh.append(out_v)
        o, lse = numpy_attention(q, k, out_v, cfg)
        worst = max(worst, oracle.rel_err(k, aux[f"khat.{l}"]), oracle.rel_err(out_v, aux[f"vhat.{l}"]),
                    oracle.rel_err(o, outs[f"out.{l}"]), oracle.rel_err(lse, aux[f"lse.{l}"]))
    st.check("depth (L=5, s=2, r=1, G=2) vs numpy loops: khat, vhat, out, lse", worst, 1e-13)
    # MEA vs numpy loops (site kv, H_c < H_kv)
    pos = oracle.token_positions([0, 5, 5, 12])[0]
    for site in ("kv", "output"):
        cfg = make_config("mea", L=1, H=4, Hkv=4, num_component_heads=2, site=site)
        inp, _ = random_inputs(cfg, 9)
        outs = outs_of(cfg, inp)[0]
        kp = np.zeros((12, 4, 8))
        vp = np.zeros((12, 4, 8))
        for h in range(4):
            for c in range(2):
                kp[:, h] += inp["a_k.0"][c, h] * inp["kc.0"][:, c]
                vp[:, h] += inp["a_v.0"][c, h] * inp["vc.0"][:, c]

        def gn(x, g, b):
            mu = x.mean(-1, keepdims=True)
            return g * (x - mu) / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + 1e-5) + b
        if site == "kv":
            kp = gn(kp, inp["gn_gamma_k.0"], inp["gn_beta_k.0"])
            vp = gn(vp, inp["gn_gamma_v.0"], inp["gn_beta_v.0"])
        o, _ = numpy_attention(np_rope(inp["q.0"], pos, 1e4), np_rope(kp, pos, 1e4), vp, cfg)
        if site == "output":
            o = gn(o, inp["gn_gamma_o.0"], inp["gn_beta_o.0"])
        st.check(f"mea site={site} H_c=2 vs numpy loops", oracle.rel_err(o, outs["out.0"]), 1e-13)
    # the one analytically zero gradient (oracle.analytically_zero): beta_k of MEA site kv without RoPE
    cfg = make_config("mea", L=1, H=4, Hkv=4, site="kv", rope=False)
    inp, douts = random_inputs(cfg, 11)
    _, _, grads = oracle.evaluate(cfg, inp, douts)
    big = max(np.abs(g).max() for g in grads.values())
    st.check("mea kv no RoPE: grad.gn_beta_k == 0 (rounding)", np.abs(grads["gn_beta_k.0"]).max() / big, 1e-14)
    st.check("mea kv no RoPE: analytically_zero() lists it",
             0.0 if oracle.analytically_zero(cfg) == {"grad.gn_beta_k.0"} else 1.0, 0)
    # compare() end to end on a case directory written here (oracle vs itself: err 0), and the
    # contract checks catch a wrong tensor
    cfg = make_config("depth", L=3, stride=2, recent_window=1)
    inp, douts = random_inputs(cfg, 10)
    outs, aux, grads = oracle.evaluate(cfg, inp, douts)
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "config.json"), "w") as f:
            json.dump(cfg, f)
        for d in (inp, douts, outs, aux):
            for k, v in d.items():
                np.save(os.path.join(tmp, k + ".npy"), v)
        for k, v in grads.items():
            np.save(os.path.join(tmp, "grad." + k + ".npy"), v)
        import io
        import contextlib
        with contextlib.redirect_stdout(io.StringIO()):
            e0 = oracle.compare(tmp)
            st.check("compare(): oracle vs its own dump", e0, 0)
            g = grads["v.1"].copy()
            g[2, 1, 3] += 1e-6 * np.abs(g).max()
            np.save(os.path.join(tmp, "grad.v.1.npy"), g)
            e1 = oracle.compare(tmp)
        st.check("compare(): detects a 1e-6 perturbation of grad.v.1", 0.0 if 0.9e-6 < e1 < 1.1e-6 else 1.0, 0)
    print(f"\nselftest: {st.n} checks, {st.fails} failed, {time.time() - t0:.1f}s")
    return 1 if st.fails else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dump", help="path to strata_reference_dump")
    ap.add_argument("--method", default="all", help="one of %s, or all" % ", ".join(METHOD_NAMES))
    ap.add_argument("--selftest", action="store_true")
    ap.add_argument("--compare", metavar="CASE_DIR", help="compare one existing case directory")
    ap.add_argument("--keep", action="store_true", help="keep the case directories")
    ap.add_argument("--verbose", "-v", action="store_true", help="print the per-tensor table of every case")
    ap.add_argument("--list", action="store_true", help="list the cases")
    a = ap.parse_args()
    if a.selftest:
        return selftest()
    if a.compare:
        err = oracle.compare(a.compare)
        print(f"max err {err:.3e}")
        return 0 if err <= oracle.TOLERANCE else 1
    methods = METHOD_NAMES if a.method == "all" else [a.method]
    for m in methods:
        if m not in METHOD_NAMES:
            print(f"run_oracle: unknown method {m}", file=sys.stderr)
            return 2
    if a.list:
        for m, s, o in CASES:
            if m in methods:
                print(" ".join(dump_command("strata_reference_dump", m, s, o, "DIR")))
        return 0
    if not a.dump or not os.access(a.dump, os.X_OK):
        print(f"run_oracle: FAIL: --dump {a.dump!r} is not an executable", file=sys.stderr)
        return 2
    return run_cases(a.dump, methods, keep=a.keep, verbose=a.verbose)


if __name__ == "__main__":
    sys.exit(main())
