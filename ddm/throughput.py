"""Training throughput and model FLOP utilisation (MFU): our transformer vs a BERT body.

    PYTHONPATH=. python benchmarks/train_throughput.py [...]   # an 11.4M-parameter pair
    ddm bench --config C --train                               # the pair of a config's model size

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

`--variants` lists the runners, a body optionally followed by speed switches joined by '+':
`gelu` (model.activation=gelu, exact GELU; ddm only), `sparse` (train.sparse_head: the
discrete head only at the masked positions), `fused` (train.fused_optimizer: fused AdamW),
`compile` (train.compile: torch.compile), `bf16` (train.mixed_precision=bf16: bf16 autocast;
its MFU is still against the fp32 peak, so not comparable). Every runner is timed in the
same interleaved rounds; "vs hf" is the median per-round time ratio against the plain `hf`
runner. FLOPs
are counted as above for every variant; with `sparse` the head's share at unmasked
positions (here ~1/2 of 6 x d_model x vocab per token) is counted but not computed.
"""
from __future__ import annotations

import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .config import ModelConfig
from .model import MaskedDiffusionTransformer, build_denoiser


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


SWITCHES = ("gelu", "sparse", "fused", "compile", "bf16")


class Runner:
    """One model, its optimizer and the timed steps."""

    def __init__(self, name: str, model: nn.Module, cfg: ModelConfig, switches: set[str]):
        self.name, self.model, self.cfg = name, model.train(), cfg
        self.sparse = "sparse" in switches
        self.bf16 = "bf16" in switches
        self.forward = torch.compile(model) if "compile" in switches else model
        self.opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.01, fused="fused" in switches or None)
        self.times: list[float] = []
        self.losses: list[float] = []
        self.first = 0.0  # the first (warm-up) step: includes the compilation when compiled

    def step(self, batch: tuple[torch.Tensor, torch.Tensor], timed: bool) -> None:
        x0, mask = batch
        start = time.perf_counter()
        xt = x0.masked_fill(mask, self.cfg.mask_id)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            if self.sparse:
                loss = F.cross_entropy(self.forward(xt, where=mask).logits, x0[mask])
            else:
                loss = F.cross_entropy(self.forward(xt).logits[mask], x0[mask])
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        elapsed = time.perf_counter() - start
        self.first = self.first or elapsed
        if timed:
            self.times.append(elapsed)
            self.losses.append(loss.item())


def parse_variant(spec: str) -> tuple[str, set[str]]:
    body, _, rest = spec.partition(":")
    switches = set(rest.split("+")) - {""}
    if body not in ("ddm", "hf") or switches - set(SWITCHES) or (body == "hf" and "gelu" in switches):
        raise ValueError(f"--variants: bad entry {spec!r}; expected ddm or hf, optionally followed by ':' and "
                         f"switches joined by '+' from {', '.join(SWITCHES)} (gelu: ddm only)")
    return body, switches


def compare(common: dict, variants: list[str], batch: int, steps: int, warmup: int = 2, round_: int = 1,
            quick: bool = False) -> None:
    """Time the runners `variants` (see `parse_variant`) on the same batches of `batch` sequences,
    interleaved, and print tokens/s, MFU against the matmul peak of this run, and the ratio to
    the plain `hf` runner (added if missing). `common`: the ModelConfig fields of both bodies
    (vocab_size, shape=[seq], d_model, depth, heads, mlp_ratio)."""
    variants = [parse_variant(v.strip()) for v in variants]
    if ("hf", set()) not in variants:
        variants.append(("hf", set()))
    seq, d_model, depth = common["shape"][0], common["d_model"], common["depth"]

    runners = []
    for body, switches in variants:
        torch.manual_seed(0)  # every variant of a body starts from the same weights
        if body == "ddm":
            cfg = ModelConfig(**common, activation="gelu" if "gelu" in switches else "gelu_tanh")
            model = MaskedDiffusionTransformer(cfg)
        else:
            cfg = ModelConfig(**common, body="hf",
                              hf_config={"model_type": "bert", "max_position_embeddings": seq})
            model = build_denoiser(cfg)
        name = body + (":" + "+".join(s for s in SWITCHES if s in switches) if switches else "")
        runners.append(Runner(name, model, cfg, switches))
    reference = variants.index(("hf", set()))

    peak_size = 1024 if quick else 2048
    peaks = [matmul_peak(peak_size, 3 if quick else 10)]

    gen = torch.Generator().manual_seed(0)
    total = warmup + steps
    batches = [(torch.randint(0, common["vocab_size"], (batch, seq), generator=gen),
                torch.rand(batch, seq, generator=gen) < 0.5) for _ in range(total)]
    for i in range(warmup):
        for r in runners:
            r.step(batches[i], timed=False)
    round_ratios = [[] for _ in runners]  # per runner and round: hf time / its time on the same batches
    rounds = tqdm(range(warmup, total, round_), desc="timing rounds", unit="round", leave=False)
    for start in rounds:  # A B C A B C ...: machine noise hits all alike
        spent = []
        for r in runners:
            before = sum(r.times)
            for i in range(start, min(start + round_, total)):
                r.step(batches[i], timed=True)
            spent.append(sum(r.times) - before)
        for ratios, t in zip(round_ratios, spent):
            ratios.append(spent[reference] / t)
        peaks.append(matmul_peak(peak_size, 1))
    peaks.append(matmul_peak(peak_size, 3 if quick else 10))
    peak = max(peaks)

    tokens = batch * seq
    print(f"threads {torch.get_num_threads()} | batch {batch} x seq {seq} = {tokens} tokens/step | "
          f"{warmup} warm-up + {steps} timed steps per model, rounds of {round_}, interleaved")
    print(f"matmul peak: fp32 {peak_size}x{peak_size} @ {peak_size}x{peak_size} (2mnk FLOPs), best of runs "
          f"before / between rounds / after = {peaks[0] / 1e9:.1f} / "
          f"{max(peaks[1:-1]) / 1e9:.1f} / {peaks[-1] / 1e9:.1f} GFLOP/s -> peak {peak / 1e9:.1f} GFLOP/s")
    print("model FLOPs/token = 6 * non-embedding params + 12 * layers * seq * d_model "
          f"(layers {depth}, seq {seq}, d_model {d_model})")
    print()
    width = max(12, max(len(r.name) for r in runners) + 2)
    header = (f"{'model':<{width}}{'params':>12}{'MFLOP/tok':>11}{'s/step med':>11}{'(min-max)':>13}"
              f"{'tokens/s':>10}{'GFLOP/s':>9}{'MFU':>8}{'MFU best':>10}{'vs hf':>7}{'(range)':>13}"
              f"{'1st step':>10}{'loss':>8}")
    print(header)
    print("-" * len(header))
    for r, ratios in zip(runners, round_ratios):
        params = sum(p.numel() for p in r.model.parameters())
        fpt = flops_per_token(r.model, depth, seq, d_model)
        med = statistics.median(r.times)
        tps = tokens / med
        spread = f"({min(r.times):.2f}-{max(r.times):.2f})"
        vs = f"({min(ratios):.2f}-{max(ratios):.2f})"
        print(f"{r.name:<{width}}{params:>12,}{fpt / 1e6:>11.1f}{med:>11.3f}{spread:>13}{tps:>10.0f}"
              f"{tps * fpt / 1e9:>9.1f}{tps * fpt / peak:>8.1%}{tokens / min(r.times) * fpt / peak:>10.1%}"
              f"{statistics.median(ratios):>6.2f}x{vs:>13}{r.first:>9.1f}s{statistics.mean(r.losses):>8.3f}")
    print()
    print(f"'vs hf': tokens/s against the plain hf runner, the median over {steps // round_} interleaved "
          "rounds of the per-round time ratio (its range in brackets); tokens/s, GFLOP/s and MFU use the median "
          "step time, 'MFU best' the fastest step (the peak is a best case too: on a shared, busy machine it is "
          "the fairer pair); '1st step': the first warm-up step (with compile: the compilation); the loss is the "
          f"mean masked CE of the timed steps (random tokens: ~ln {common['vocab_size']})")




def model_pair(cfg: ModelConfig) -> dict:
    """`compare`'s `common` for a trained model's size: its vocabulary, length, width, depth,
    heads and MLP ratio, on one flat axis and without a condition (the BERT body has neither)."""
    return dict(vocab_size=cfg.vocab_size, shape=[cfg.seq_len], d_model=cfg.d_model, depth=cfg.depth,
                heads=cfg.heads, mlp_ratio=cfg.mlp_ratio)
