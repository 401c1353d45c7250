"""strata_torch.defaults states the C++ API's defaults (strata/core/defaults.hpp): the same
names (kRopeTheta -> ROPE_THETA), the same values, and every function's default arguments come
from it."""
import inspect
import pathlib
import re

import strata_torch
from strata_torch import decode, defaults

HEADER = pathlib.Path(__file__).resolve().parents[2] / "include/strata/core/defaults.hpp"


def cpp_defaults() -> dict:
    text = HEADER.read_text()
    raw = dict(re.findall(r"inline constexpr (?:bool|float) k(\w+) = ([^;]+);", text))
    # kExoFormerRopeTheta -> EXOFORMER_ROPE_THETA ("Former" ends the names ExoFormer, RoFormer)
    snake = {k: re.sub(r"(?<=[a-z0-9])(?=[A-Z])(?!Former)", "_", k).upper() for k in raw}

    def value(expr: str):
        expr = expr.strip()
        if expr in ("true", "false"):
            return expr == "true"
        if expr.startswith("k"):
            return value(raw[expr[1:]])
        return float(expr.rstrip("f"))

    return {snake[k]: value(v) for k, v in raw.items()}


def test_the_header_is_read():
    c = cpp_defaults()
    assert c["EXOFORMER_ROPE_THETA"] == 500000.0 and c["QK_NORM"] is False
    assert len(c) == 9


def test_python_states_every_cpp_default():
    for name, v in cpp_defaults().items():
        assert hasattr(defaults, name), name
        got = getattr(defaults, name)
        assert type(got) is type(v) and got == v, (name, got, v)


def test_every_function_takes_its_defaults_from_the_module():
    expected = {
        "exoformer": defaults.EXOFORMER_ROPE_THETA,
        "exoformer_varlen": defaults.EXOFORMER_ROPE_THETA,
        "exoformer_decode": defaults.EXOFORMER_ROPE_THETA,
        "depth_attention": defaults.DEPTH_ATTENTION_ROPE_THETA,
        "depth_attention_varlen": defaults.DEPTH_ATTENTION_ROPE_THETA,
        "depth_attention_decode": defaults.DEPTH_ATTENTION_ROPE_THETA,
        "mea": defaults.MEA_ROPE_THETA,
        "mea_varlen": defaults.MEA_ROPE_THETA,
        "mea_decode": defaults.MEA_ROPE_THETA,
    }
    for name, theta in expected.items():
        fn = getattr(strata_torch, name, None) or getattr(decode, name)
        params = inspect.signature(fn).parameters
        assert params["rope_theta"].default == theta, name
        assert params["rope"].default is defaults.ROPE, name
        for eps in ("eps", "norm_eps", "anchor_eps"):
            if eps in params:
                assert params[eps].default == defaults.RMS_NORM_EPS, (name, eps)
        if "gn_eps" in params:
            assert params["gn_eps"].default == defaults.GROUP_NORM_EPS, name
