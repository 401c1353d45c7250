"""Train a tiny MEA model (Multi-head Explicit Attention): keys and values are projected to
H_c component heads and composed into the attention's heads by learnable matrices A^K, A^V
(K' = sum_c A^K[c, h] K_c[c]), with a head GroupNorm on K', V'; strata_torch.mea fuses the
composition, the GroupNorm and RoPE into one token-local pass before the flash kernel. Here one
component head feeds two attention heads (virtual heads)."""
import torch
from torch import nn

import strata_torch as st
from tiny_lm import DIM, HEADS, HEAD_DIM, train

COMPONENTS = 1  # H_c < H_kv = HEADS: virtual heads


class MeaAttention(nn.Module):
    def __init__(self, layer: int):
        super().__init__()
        self.q = nn.Linear(DIM, DIM, bias=False, dtype=torch.bfloat16)
        self.kv = nn.Linear(DIM, 2 * COMPONENTS * HEAD_DIM, bias=False, dtype=torch.bfloat16)
        self.a_k = nn.Parameter(torch.randn(COMPONENTS, HEADS))  # fp32 composition matrices
        self.a_v = nn.Parameter(torch.randn(COMPONENTS, HEADS))
        self.gn = nn.ParameterList([nn.Parameter(torch.ones(HEADS, HEAD_DIM)),    # gamma_k
                                    nn.Parameter(torch.zeros(HEADS, HEAD_DIM)),   # beta_k
                                    nn.Parameter(torch.ones(HEADS, HEAD_DIM)),    # gamma_v
                                    nn.Parameter(torch.zeros(HEADS, HEAD_DIM))])  # beta_v
        self.out = nn.Linear(DIM, DIM, bias=False, dtype=torch.bfloat16)

    def forward(self, x, state):
        b, s, _ = x.shape
        q = self.q(x).view(b, s, HEADS, HEAD_DIM)
        kc, vc = (t.contiguous() for t in
                  self.kv(x).view(b, s, 2, COMPONENTS, HEAD_DIM).unbind(dim=2))
        y = st.mea(q, kc, vc, self.a_k, self.a_v, *self.gn, site="kv", causal=True)
        return self.out(y.reshape(b, s, DIM))


if __name__ == "__main__":
    train(MeaAttention, "mea")
