"""Argument conversions shared by the training and the decode functions."""
from __future__ import annotations

import math
from typing import Optional

from torch import Tensor

from ._capi import StrataError


def mask_args(q: Tensor, softmax_scale: Optional[float], causal: bool,
              window_size: tuple) -> tuple[float, bool, int]:
    """FlashAttention's (softmax_scale, causal, window_size) as Strata's (scale, causal,
    window_left). Strata's window looks left only: window_size = (left, -1), or (left, 0), which
    is causal."""
    if not isinstance(q, Tensor):
        raise StrataError(f"q: expected a torch.Tensor, got {type(q).__name__}")
    if softmax_scale is None:
        softmax_scale = 1.0 / math.sqrt(q.shape[-1])
    softmax_scale = float(softmax_scale)
    if not math.isfinite(softmax_scale) or softmax_scale <= 0:
        raise StrataError(f"softmax_scale = {softmax_scale}: must be finite and positive")
    try:
        left, right = (int(w) for w in window_size)
    except (TypeError, ValueError):
        raise StrataError(f"window_size = {window_size!r}: expected (left, right)") from None
    if right not in (-1, 0):
        raise StrataError(f"window_size = {tuple(window_size)}: Strata's window looks left only "
                          "(right must be -1, or 0 for causal)")
    if left < -1:
        raise StrataError(f"window_size = {tuple(window_size)}: left must be -1 or >= 0")
    return softmax_scale, bool(causal) or right == 0, left
