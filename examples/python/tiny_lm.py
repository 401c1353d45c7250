"""A tiny decoder-only language model and its training loop, shared by the train_<method>.py
examples: each example supplies only its attention block, the part to copy into a trainer.

The task is next-token prediction on sequences that follow one of four fixed permutations
(next = perm_c[current]), where the class c is told only by the first token: a model learns the
transitions quickly and then needs attention back to position 0 to pick the right one. A few
dozen steps on CPU show the loss falling. CPU tensors run Strata's
kernels in its SIMT simulator (the same CUDA C++ as on a GPU); move the model and the batch to
"cuda" to run the nvcc build.
"""
from __future__ import annotations

import argparse
import time
from typing import Callable

import torch
from torch import nn
import torch.nn.functional as F

VOCAB, DIM, HEADS, HEAD_DIM = 64, 128, 2, 64


class Mlp(nn.Module):
    def __init__(self, dim: int = DIM):
        super().__init__()
        self.up = nn.Linear(dim, 4 * dim, bias=False)
        self.down = nn.Linear(4 * dim, dim, bias=False)

    def forward(self, x):
        return self.down(F.gelu(self.up(x)))


class TinyLM(nn.Module):
    """Embedding, `layers` x (pre-norm attention block + MLP), head. `make_block(l)` builds
    layer l's attention block; its forward is block(x, state) -> y, where `state` is a dict the
    blocks of one forward share (cross-layer methods keep layer 0's values or anchors in it)."""

    def __init__(self, make_block: Callable[[int], nn.Module], layers: int = 3):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, DIM)
        self.attn = nn.ModuleList(make_block(l) for l in range(layers))
        self.mlp = nn.ModuleList(Mlp() for _ in range(layers))
        self.norm1 = nn.ModuleList(nn.RMSNorm(DIM) for _ in range(layers))
        self.norm2 = nn.ModuleList(nn.RMSNorm(DIM) for _ in range(layers))
        self.norm_out = nn.RMSNorm(DIM)
        self.head = nn.Linear(DIM, VOCAB, bias=False)
        nn.init.normal_(self.embed.weight, std=0.1)

    def forward(self, tokens):
        x = self.embed(tokens)
        state: dict = {"embed": x}
        for attn, mlp, n1, n2 in zip(self.attn, self.mlp, self.norm1, self.norm2):
            # the kernels take bfloat16 (or float16); the residual stream stays float32
            x = x + attn(n1(x).bfloat16(), state).float()
            x = x + mlp(n2(x))
        return self.head(self.norm_out(x))


PERMS = torch.stack([torch.randperm(VOCAB, generator=torch.Generator().manual_seed(c))
                     for c in range(4)])


def batch(size: int, seqlen: int, generator: torch.Generator):
    seq = torch.empty(size, seqlen, dtype=torch.long)
    seq[:, 0] = torch.randint(0, VOCAB, (size,), generator=generator)
    perm = PERMS[seq[:, 0] % 4]  # the class of each sequence, from its first token
    seq[:, 1] = torch.randint(0, VOCAB, (size,), generator=generator)
    for t in range(2, seqlen):
        seq[:, t] = perm.gather(1, seq[:, t - 1:t]).squeeze(1)
    return seq[:, :-1], seq[:, 1:]


def train(make_block: Callable[[int], nn.Module], name: str, argv=None) -> TinyLM:
    ap = argparse.ArgumentParser(description=f"train a tiny {name} language model")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seqlen", type=int, default=33)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    model = TinyLM(make_block, args.layers).to(args.device)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(1)
    losses, start = [], time.time()
    for step in range(args.steps):
        inputs, targets = (t.to(args.device) for t in batch(args.batch, args.seqlen, gen))
        loss = F.cross_entropy(model(inputs).flatten(0, 1), targets.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()  # through Strata's backward kernels (torch.library autograd)
        opt.step()
        losses.append(loss.item())
        if step % 10 == 0 or step == args.steps - 1:
            print(f"{name}: step {step:3d}  loss {loss.item():.3f}", flush=True)
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    print(f"{name}: loss {first:.3f} -> {last:.3f} in {args.steps} steps "
          f"({time.time() - start:.1f} s on {args.device})")
    if not last < 0.85 * first:
        raise SystemExit(f"{name}: the loss did not fall")
    print(f"{name}: loss falls")
    return model
