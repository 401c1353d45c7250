"""Train a tiny Depth-Attention model: each layer first attends over earlier layers' keys at
the same token (its KV group's mean query against the sources' k^ and its own), mixing their
values into v^, then attends over the sequence with (q, k^, v^); QK-norm and RoPE are fused in
the same token-local pass (strata_torch.depth_attention). Layer l reads every earlier layer here
(the paper's stride / recent-window rule picks a subset in deeper stacks); gradients reach the
sources through autograd."""
import torch
from torch import nn

import strata_torch as st
from tiny_lm import DIM, HEADS, HEAD_DIM, train


class DepthAttention(nn.Module):
    def __init__(self, layer: int):
        super().__init__()
        self.layer = layer
        self.qkv = nn.Linear(DIM, 3 * DIM, bias=False, dtype=torch.bfloat16)
        self.gamma_q = nn.Parameter(torch.ones(HEAD_DIM))  # QK-norm gains (fp32)
        self.gamma_k = nn.Parameter(torch.ones(HEAD_DIM))
        self.out = nn.Linear(DIM, DIM, bias=False, dtype=torch.bfloat16)

    def forward(self, x, state):
        b, s, _ = x.shape
        # the depth pass reads contiguous projections
        q, k, v = (t.contiguous() for t in self.qkv(x).view(b, s, 3, HEADS, HEAD_DIM).unbind(2))
        sources = state.setdefault("depth_sources", [])  # (k^_j, v^_j) of the layers below
        y, src = st.depth_attention(q, k, v, sources=list(sources), gamma_q=self.gamma_q,
                                    gamma_k=self.gamma_k, causal=True)
        sources.append(src)
        return self.out(y.reshape(b, s, DIM))


if __name__ == "__main__":
    train(DepthAttention, "depth")
