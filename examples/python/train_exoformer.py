"""Train a tiny ExoFormer (Su, "Attention Projection Mixing with Exogenous Anchors") with Gated
Attention's output gate: every layer mixes its q, k, v and gate projections with anchors
projected once per forward from the token embeddings,

    P~ = lambda1_P * s_P1 * RMSNorm(anchor_P) + lambda2_P * s_P2 * P,

then QK-norm, RoPE and gated attention, all fused in strata_torch.exoformer (the mix in one
token-local pass, then the gated flash kernel). s = sigmoid(x W_s) are the dynamic variant's
per-token scales. The anchors' gradient from every layer is summed by autograd."""
import torch
from torch import nn

import strata_torch as st
from tiny_lm import DIM, HEADS, HEAD_DIM, train


class ExoAttention(nn.Module):
    def __init__(self, layer: int):
        super().__init__()
        self.layer = layer
        self.proj = nn.Linear(DIM, 4 * DIM, bias=False, dtype=torch.bfloat16)  # q, k, v, g
        if layer == 0:  # the stack's anchor projection E W_anc, computed once per forward
            self.anchor_proj = nn.Linear(DIM, 4 * DIM, bias=False, dtype=torch.bfloat16)
            self.anchor_gains = nn.ParameterList(nn.Parameter(torch.ones(HEAD_DIM))
                                                 for _ in range(4))
        self.lambda1 = nn.ParameterList(nn.Parameter(torch.full((HEADS,), 0.5)) for _ in range(4))
        self.lambda2 = nn.ParameterList(nn.Parameter(torch.full((HEADS,), 1.0)) for _ in range(4))
        self.gamma_q = nn.Parameter(torch.ones(HEAD_DIM))
        self.gamma_k = nn.Parameter(torch.ones(HEAD_DIM))
        self.scales = nn.Linear(DIM, 8)  # dynamic: s = sigmoid(x W_s), q1 q2 k1 k2 v1 v2 g1 g2
        self.out = nn.Linear(DIM, DIM, bias=False, dtype=torch.bfloat16)

    def forward(self, x, state):
        b, s, _ = x.shape
        if self.layer == 0:
            e = state["embed"].bfloat16()
            state["anchors"] = list(self.anchor_proj(e).view(b, s, 4, HEADS, HEAD_DIM).unbind(2))
            state["anchor_gains"] = list(self.anchor_gains)
        p = list(self.proj(x).view(b, s, 4, HEADS, HEAD_DIM).unbind(dim=2))
        scales = torch.sigmoid(self.scales(x.float()))  # fp32 [b, s, 8]
        y = st.exoformer(p, state["anchors"], state["anchor_gains"], list(self.lambda1),
                         list(self.lambda2), self.gamma_q, self.gamma_k, scales, causal=True)
        return self.out(y.reshape(b, s, DIM))


if __name__ == "__main__":
    train(ExoAttention, "exoformer")
