"""Training throughput and model FLOP utilisation (MFU): our transformer vs a BERT body.

    PYTHONPATH=. python benchmarks/train_throughput.py [--steps 10] [--batch 8] [--seq 128] [--quick]

Two denoisers of (nearly) the same size, a `MaskedDiffusionTransformer` (body "ddm") and
an `HFDenoiser` around a `transformers` BERT encoder built from a config (body "hf"),
train on the same batches with the same objective: random tokens, each masked with
probability 1/2, cross-entropy on the masked positions, one AdamW step. Their timing
rounds alternate (A B A B ...) so that slow phases of the machine hit both alike; warm-up
steps are not timed.

MFU is measured against a matmul peak taken on this machine in this run: the best rate
of a large fp32 matmul (2 m n k FLOPs each), timed before, between and after the rounds.
Model FLOPs per token (forward + backward) = 6 * N + 12 * L * S * D, with N the
non-embedding parameters (every parameter outside embedding tables; the output head
counts), L layers, S the sequence length and D the model width.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from ddm.config import ModelConfig
from ddm.model import MaskedDiffusionTransformer, build_denoiser


def matmul_peak(size: int, repeats: int) -> float:
    """Best FLOP/s of an fp32 [size x size] @ [size x size] matmul."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    out = torch.empty(size, size)
    for _ in range(2):
        torch.mm(a, b, out=out)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b, out=out)
        best = min(best, time.perf_counter() - start)
    return 2.0 * size ** 3 / best


def embedding_parameters(model: nn.Module) -> int:
    return sum(p.numel() for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters())


def flops_per_token(model: nn.Module, layers: int, seq: int, d_model: int) -> float:
    non_embedding = sum(p.numel() for p in model.parameters()) - embedding_parameters(model)
    return 6.0 * non_embedding + 12.0 * layers * seq * d_model


class Runner:
    """One model, its optimizer and the timed steps."""

    def __init__(self, name: str, model: nn.Module, cfg: ModelConfig):
        self.name, self.model, self.cfg = name, model.train(), cfg
        self.opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.01)
        self.times: list[float] = []
        self.losses: list[float] = []

    def step(self, batch: tuple[torch.Tensor, torch.Tensor], timed: bool) -> None:
        x0, mask = batch
        start = time.perf_counter()
        logits = self.model(x0.masked_fill(mask, self.cfg.mask_id)).logits
        loss = F.cross_entropy(logits[mask], x0[mask])
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        elapsed = time.perf_counter() - start
        if timed:
            self.times.append(elapsed)
            self.losses.append(loss.item())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=10, help="timed steps per model")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per model")
    p.add_argument("--round", type=int, default=2, help="steps per model per timing round")
    p.add_argument("--quick", action="store_true", help="a small smoke run (seconds)")
    args = p.parse_args()
    if args.quick:
        args.steps, args.batch, args.seq, args.warmup, args.round = 2, 4, min(args.seq, 64), 1, 1
    torch.set_num_threads(os.cpu_count())
    torch.manual_seed(0)

    vocab, d_model, depth, heads = 1024, 384, 6, 6
    common = dict(vocab_size=vocab, shape=[args.seq], d_model=d_model, depth=depth, heads=heads, mlp_ratio=4.0)
    ddm_cfg = ModelConfig(**common)
    hf_cfg = ModelConfig(**common, body="hf",
                         hf_config={"model_type": "bert", "max_position_embeddings": args.seq})
    runners = [Runner("ddm (ours)", MaskedDiffusionTransformer(ddm_cfg), ddm_cfg),
               Runner("hf (BERT)", build_denoiser(hf_cfg), hf_cfg)]

    peak_size = 1024 if args.quick else 2048
    peaks = [matmul_peak(peak_size, 3 if args.quick else 10)]

    gen = torch.Generator().manual_seed(0)
    total = args.warmup + args.steps
    batches = [(torch.randint(0, vocab, (args.batch, args.seq), generator=gen),
                torch.rand(args.batch, args.seq, generator=gen) < 0.5) for _ in range(total)]
    for i in range(args.warmup):
        for r in runners:
            r.step(batches[i], timed=False)
    round_ratios = []  # per round: ddm time / hf time on the same batches, back to back
    for start in range(args.warmup, total, args.round):  # A B A B ...: machine noise hits both
        spent = []
        for r in runners:
            before = sum(r.times)
            for i in range(start, min(start + args.round, total)):
                r.step(batches[i], timed=True)
            spent.append(sum(r.times) - before)
        round_ratios.append(spent[1] / spent[0])
        peaks.append(matmul_peak(peak_size, 1))
    peaks.append(matmul_peak(peak_size, 3 if args.quick else 10))
    peak = max(peaks)

    tokens = args.batch * args.seq
    print(f"threads {torch.get_num_threads()} | batch {args.batch} x seq {args.seq} = {tokens} tokens/step | "
          f"{args.warmup} warm-up + {args.steps} timed steps per model, rounds of {args.round}, interleaved")
    print(f"matmul peak: fp32 {peak_size}x{peak_size} @ {peak_size}x{peak_size} (2mnk FLOPs), best of runs "
          f"before / between rounds / after = {peaks[0] / 1e9:.1f} / "
          f"{max(peaks[1:-1]) / 1e9:.1f} / {peaks[-1] / 1e9:.1f} GFLOP/s -> peak {peak / 1e9:.1f} GFLOP/s")
    print("model FLOPs/token = 6 * non-embedding params + 12 * layers * seq * d_model "
          f"(layers {depth}, seq {args.seq}, d_model {d_model})")
    print()
    header = (f"{'model':<12}{'params':>12}{'non-emb':>12}{'MFLOP/tok':>11}{'s/step med':>11}{'(min-max)':>15}"
              f"{'tokens/s':>11}{'GFLOP/s':>9}{'MFU':>8}{'MFU best':>10}{'loss':>8}")
    print(header)
    print("-" * len(header))
    rates = {}
    for r in runners:
        params = sum(p.numel() for p in r.model.parameters())
        non_emb = params - embedding_parameters(r.model)
        fpt = flops_per_token(r.model, depth, args.seq, d_model)
        med = statistics.median(r.times)
        tps = tokens / med
        rates[r.name] = tps
        spread = f"({min(r.times):.2f}-{max(r.times):.2f})"
        print(f"{r.name:<12}{params:>12,}{non_emb:>12,}{fpt / 1e6:>11.1f}{med:>11.3f}{spread:>15}{tps:>11.0f}"
              f"{tps * fpt / 1e9:>9.1f}{tps * fpt / peak:>8.1%}{tokens / min(r.times) * fpt / peak:>10.1%}"
              f"{statistics.mean(r.losses):>8.3f}")
    pa, pb = (sum(p.numel() for p in r.model.parameters()) for r in runners)
    paired = statistics.median(round_ratios)
    print()
    print(f"params hf / ddm = {pb / pa:.3f}")
    print(f"side by side, tokens/s ddm / hf: {paired:.2f}x (median over {len(round_ratios)} interleaved rounds of "
          f"the per-round time ratio hf / ddm; rounds ranged {min(round_ratios):.2f}-{max(round_ratios):.2f}x; "
          f"from median step times: {rates[runners[0].name] / rates[runners[1].name]:.2f}x)")
    print("tokens/s, GFLOP/s and MFU use the median step time, 'MFU best' the fastest step (the peak is a best "
          "case too: on a shared, busy machine it is the fairer pair); the loss is the mean masked CE of the timed steps "
          "(random tokens: ~ln 1024 = 6.93)")

if __name__ == "__main__":
    main()
