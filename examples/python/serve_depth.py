"""Serve the tiny Depth-Attention model of train_depth.py with a paged KV cache, the way an
engine does: a page pool, a block table per sequence, one chunked-prefill step for the prompts,
then greedy decoding one token per sequence per step, each layer through
strata_torch.depth_attention_decode. The step's (k^, v^) of each layer are the sources of the
later layers *of the same step*; only k^ and v^ are cached (a vanilla cache's size).

The check at the end: the logits the decode produced for every position equal those of the
training forward (strata_torch.depth_attention) over the finished sequences, up to bf16
rounding, and every greedy token is the forward's argmax (or a near tie).

    python serve_depth.py [--steps 30] [--new-tokens 12] [--page-size 4]
"""
from __future__ import annotations

import argparse

import torch

import strata_torch as st
from tiny_lm import DIM, HEADS, HEAD_DIM, PERMS, TinyLM, VOCAB, train
from train_depth import DepthAttention


class PagePool:
    """Physical pages handed out on demand; block_table[s] lists sequence s's pages in order
    (vLLM's block table). Unused entries are -1 and never read: a sequence's length says how
    many of its pages are live."""

    def __init__(self, num_pages: int, page_size: int, batch: int, max_pages: int):
        self.page_size = page_size
        self.free = list(range(num_pages))[::-1]
        self.block_table = torch.full((batch, max_pages), -1, dtype=torch.int32)

    def reserve(self, seq: int, length: int) -> None:
        """Pages for `length` tokens of sequence `seq`."""
        need = -(-length // self.page_size)
        row = self.block_table[seq]
        for j in range(need):
            if row[j] < 0:
                row[j] = self.free.pop()


def decode_forward(model: TinyLM, tokens: torch.Tensor, caches, batch: st.DecodeBatch):
    """The model over one step's new tokens (packed [total_q]): TinyLM.forward with each
    attention block's decode path."""
    x = model.embed(tokens)
    sources = []  # this step's (k^, v^) of each layer, for the later layers
    for layer, (attn, mlp, n1, n2) in enumerate(zip(model.attn, model.mlp, model.norm1,
                                                    model.norm2)):
        h = n1(x).bfloat16()
        q, k, v = (t.contiguous() for t in attn.qkv(h).view(-1, 3, HEADS, HEAD_DIM).unbind(1))
        y, src = st.depth_attention_decode(q, k, v, *caches[layer], batch,
                                           sources=list(sources), gamma_q=attn.gamma_q,
                                           gamma_k=attn.gamma_k)
        sources.append(src)
        x = x + attn.out(y.reshape(-1, DIM)).float()
        x = x + mlp(n2(x))
    return model.head(model.norm_out(x))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=30, help="training steps before serving")
    ap.add_argument("--new-tokens", type=int, default=12)
    ap.add_argument("--page-size", type=int, default=4)
    args = ap.parse_args()
    model = train(DepthAttention, "depth", ["--steps", str(args.steps)])
    model.eval()

    # three prompts of different lengths, each following its class's permutation
    g = torch.Generator().manual_seed(7)
    prompts = []
    for n in (5, 9, 3):
        seq = [int(torch.randint(0, VOCAB, (1,), generator=g))] * 2
        seq[1] = int(torch.randint(0, VOCAB, (1,), generator=g))
        while len(seq) < n:
            seq.append(int(PERMS[seq[0] % 4][seq[-1]]))
        prompts.append(seq)
    b, ps = len(prompts), args.page_size
    longest = max(len(p) for p in prompts) + args.new_tokens
    max_pages = -(-longest // ps)
    pool = PagePool(b * max_pages + 2, ps, b, max_pages)
    caches = [[torch.zeros(len(pool.free), ps, HEADS, HEAD_DIM, dtype=torch.bfloat16)
               for _ in range(2)] for _ in model.attn]  # K, V of each layer

    seqs = [list(p) for p in prompts]
    logits_at = [dict() for _ in range(b)]  # position -> the decode's logits
    cache_lens = [0] * b
    with torch.no_grad():
        for step in range(args.new_tokens + 1):
            # step 0: the prompts (chunked prefill); then the last token of each sequence
            new = [len(s) - cache_lens[i] for i, s in enumerate(seqs)]
            for i in range(b):
                pool.reserve(i, cache_lens[i] + new[i])
            batch = st.DecodeBatch.build(pool.block_table, torch.tensor(cache_lens),
                                         torch.tensor(new), ps)
            tokens = torch.tensor([t for i, s in enumerate(seqs) for t in s[cache_lens[i]:]])
            logits = decode_forward(model, tokens, caches, batch)
            last = torch.cumsum(torch.tensor(new), 0) - 1
            row = 0
            for i in range(b):
                for j in range(new[i]):
                    logits_at[i][cache_lens[i] + j] = logits[row + j]
                row += new[i]
            for i in range(b):
                cache_lens[i] += new[i]
                if step < args.new_tokens:
                    seqs[i].append(int(logits[last[i]].argmax()))

        # the training forward over the finished sequences
        worst, ties, follows = 0.0, 0, 0
        for i, s in enumerate(seqs):
            full = model(torch.tensor(s[:-1])[None])[0]
            for pos in range(len(s) - 1):
                d = logits_at[i][pos]
                worst = max(worst, (d - full[pos]).abs().max().item())
                if pos >= len(prompts[i]) - 1:
                    picked = s[pos + 1]
                    gap = full[pos].max().item() - full[pos][picked].item()
                    if gap > 0.1:
                        raise SystemExit(f"serve: sequence {i} position {pos}: the decode picked "
                                         f"a token {gap:.3f} below the forward's best")
                    ties += gap > 0
                    follows += picked == int(PERMS[s[0] % 4][s[pos]])
    generated = b * args.new_tokens
    print(f"serve: {b} sequences, {generated} tokens generated through a paged cache "
          f"(page size {ps}, {int((pool.block_table >= 0).sum())} pages used)")
    print(f"serve: decode vs training forward logits: max |diff| {worst:.3e}; "
          f"{ties} near-tie picks; {follows}/{generated} tokens follow the task's permutation")
    if worst > 0.25:
        raise SystemExit("serve: the decode's logits differ from the training forward's")
    print("serve: the decode path reproduces the training forward")


if __name__ == "__main__":
    main()
