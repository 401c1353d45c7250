"""Train a tiny language model whose attention is strata_torch.flash_attn_func (vanilla
attention, FlashAttention's API): the baseline of the other examples."""
import torch
from torch import nn

import strata_torch as st
from tiny_lm import DIM, HEADS, HEAD_DIM, train


class Attention(nn.Module):
    def __init__(self, layer: int):
        super().__init__()
        self.qkv = nn.Linear(DIM, 3 * DIM, bias=False, dtype=torch.bfloat16)
        self.out = nn.Linear(DIM, DIM, bias=False, dtype=torch.bfloat16)

    def forward(self, x, state):
        b, s, _ = x.shape
        # slices of one projection: Strata reads the strided rows in place
        q, k, v = self.qkv(x).view(b, s, 3, HEADS, HEAD_DIM).unbind(dim=2)
        y = st.flash_attn_func(q, k, v, causal=True)
        return self.out(y.reshape(b, s, DIM))


if __name__ == "__main__":
    train(Attention, "flash")
