"""Sampler quality vs NFE on the synthetic task, and the speed of cached condition prefixes.

    python benchmarks/sampling.py --oracle            # exact denoiser (OracleDenoiser)
    python benchmarks/sampling.py --model runs/x/model # a trained folder (sampled with its own schedule)
    python benchmarks/sampling.py --oracle --quick     # a tiny version (seconds)

(1) For each order x count rule x remasking rule at step budgets 4, 8, 16, 64: true NLL of the
    samples / true entropy (over the possible samples; parallel decoding can produce
    impossible sequences, counted separately), pairwise-statistics TV distance at lags
    1, 2, 4, 8 (with its noise floor: the TV of as many true samples), NFE, and wall time per
    sample. Count rules that commit at least one token per step clamp the budget to the length.
(2) Prefix caching on a ~10M-parameter random-init transformer with a 256-token condition
    prefix and a 32/64-token target: identical samples, the largest logit difference, and
    time per sample with and without the cache, measured side by side.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ddm.config import ModelConfig, SampleConfig  # noqa: E402
from ddm.model import Condition, MaskedDiffusionTransformer  # noqa: E402
from ddm.sampling import Order, Sampler, sample_many  # noqa: E402
from tasks.synthetic.oracle import OracleDenoiser  # noqa: E402
from tasks.synthetic.source import SourceSpec, UnifilarHMM, empirical_pair_stats, pair_tv  # noqa: E402

LAGS = [1, 2, 4, 8]
ORDERS = ["random", "confidence", "margin", "entropy"]
REMASKING = ["none", "recheck", "cap", "rescale", "conf"]


def samplers(quick: bool) -> list[tuple[str, dict]]:
    """(label, SampleConfig fields) for every row of table (1)."""
    rows = []
    for order in ORDERS:
        for remasking in (["none", "cap"] if quick else REMASKING):
            rows.append((f"{order:<10} schedule  {remasking}", dict(order=order, remasking=remasking)))
    rows.append(("random     ancestral none", dict(order="random", count="ancestral")))
    rows.append(("random     ancestral cap", dict(order="random", count="ancestral", remasking="cap")))
    rows.append(("confidence threshold none", dict(order="confidence", count="threshold", threshold=0.9)))
    if not quick:
        rows.append(("confidence cosine    none", dict(order="confidence", count_schedule="cosine")))
        # MaskGIT's annealed Gumbel choice noise: the knob between greedy (0) and random (large)
        for tau in (1.0, 2.0, 4.0):
            for remasking in ("none", "recheck"):
                rows.append((f"confidence +gumbel{tau:g}  {remasking}",
                             dict(order="confidence", gumbel_temperature=tau, remasking=remasking)))
    return rows


def quality_table(model, source: UnifilarHMM, length: int, args) -> None:
    entropy = source.entropy(length)
    exact_pairs = source.pair_stats(length, LAGS)
    truth = source.sample(args.samples, length, torch.Generator().manual_seed(12345))
    floor = pair_tv(empirical_pair_stats(truth, LAGS, source.vocab_size), exact_pairs)
    true_ratio = float(-source.log_prob(truth).mean()) / entropy
    print(f"\n(1) synthetic source {SourceSpec(seed=args.source_seed)}, length {length}: "
          f"entropy {entropy / length:.4f} nats/token; {args.samples} samples per cell")
    print(f"    true samples: NLL/H {true_ratio:.4f}, pair TV (noise floor) {floor:.4f}; "
          "remasking: recheck thr 0.1 / drop 0.3, ReMDM eta 0.05")
    for budget in args.nfe:
        print(f"\n  step budget {budget}")
        print(f"  {'order      count     remask':<34} {'NFE':>5} {'NLL/H':>7} {'impossible':>10} "
              f"{'pair TV':>8} {'ms/sample':>10}")
        for label, fields in samplers(args.quick):
            cfg = SampleConfig(steps=budget, remask_drop=0.3, **fields)
            sampler = Sampler.from_config(cfg, model.diffusion)  # the model's own training schedule
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the clamp of budget 64 to the length is expected
                result = sample_many(model, args.samples, args.batch_size, sampler=sampler,
                                     generator=torch.Generator().manual_seed(0))
            ms = 1000 * (time.perf_counter() - start) / args.samples
            nll = -source.log_prob(result.ids)
            possible = torch.isfinite(nll)
            ratio = float(nll[possible].mean()) / entropy if possible.any() else float("inf")
            tv = pair_tv(empirical_pair_stats(result.ids, LAGS, source.vocab_size), exact_pairs)
            print(f"  {label:<34} {result.nfe:>5} {ratio:>7.4f} {100 * (1 - possible.double().mean()):>9.1f}% "
                  f"{tv:>8.4f} {ms:>10.3f}")


def random_conditional_model(d_model: int, depth: int, heads: int, target: int, prefix: int) -> MaskedDiffusionTransformer:
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=256, shape=[target], d_model=d_model, depth=depth, heads=heads,
                      cond_vocab_size=1000, cond_len=prefix)
    model = MaskedDiffusionTransformer(cfg)
    with torch.no_grad():  # the discrete head is zero-initialised: randomise it so predictions differ
        torch.nn.init.normal_(model.heads.discrete.weight, std=0.5)
    return model.eval()


def cache_table(args) -> None:
    if args.quick:
        d_model, depth, heads, prefix, targets, batch, steps = 128, 2, 4, 64, [16], 2, 4
    else:
        d_model, depth, heads, prefix, targets, batch, steps = 384, 6, 6, 256, [32, 64], 2, 16
    torch.set_num_threads(args.threads)
    print(f"\n(2) prefix caching: random-init transformer d_model={d_model} depth={depth}, condition prefix "
          f"{prefix} tokens, {steps} steps, batch {batch}, {torch.get_num_threads()} threads")
    print(f"  {'target':>6} {'params':>8} {'same ids':>9} {'max|dlogit|':>12} {'NFE':>4} "
          f"{'cached s/sample':>16} {'uncached s/sample':>18} {'speed-up':>9}")
    for target in targets:
        model = random_conditional_model(d_model, depth, heads, target, prefix)
        g = torch.Generator().manual_seed(1)
        cond = Condition(tokens=torch.randint(0, 1000, (batch, prefix), generator=g))
        times = {True: [], False: []}
        ids = {}
        for _ in range(args.repeats):  # side by side, alternating, best of the repeats
            for cache in (True, False):
                sampler = Sampler(steps=steps, order=Order("confidence"), cache_prefix=cache)
                start = time.perf_counter()
                result = sampler(model, cond=cond, generator=torch.Generator().manual_seed(2))
                times[cache].append((time.perf_counter() - start) / batch)
                ids[cache] = result.ids
        partial = ids[True].masked_fill(torch.rand(batch, target, generator=g) < 0.5, model.config.mask_id)
        with torch.no_grad():
            a = model(partial, cond=cond).logits
            b = model(partial, prefix=model.encode_prefix(cond)).logits
        diff = float((a - b).abs().max())
        cached, uncached = min(times[True]), min(times[False])
        print(f"  {target:>6} {model.num_parameters / 1e6:>7.1f}M {str(torch.equal(ids[True], ids[False])):>9} "
              f"{diff:>12.2e} {result.nfe:>4} {cached:>16.3f} {uncached:>18.3f} {uncached / cached:>8.2f}x")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source_group = p.add_mutually_exclusive_group(required=True)
    source_group.add_argument("--model", type=Path, help="a MaskedDiffusionTransformer.from_pretrained folder")
    source_group.add_argument("--oracle", action="store_true", help="use the exact OracleDenoiser")
    p.add_argument("--source-seed", type=int, default=SourceSpec().seed)
    p.add_argument("--length", type=int, default=32)
    p.add_argument("--samples", type=int, default=800)
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--nfe", type=int, nargs="+", default=[4, 8, 16, 64], help="step budgets")
    p.add_argument("--threads", type=int, default=1,
                   help="threads for part (2); more than one is slower on a busy small machine")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--skip-cache", action="store_true")
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.samples, args.batch_size, args.nfe, args.repeats = 200, 200, [4, 16], 1

    source = UnifilarHMM.random(SourceSpec(seed=args.source_seed))
    if args.oracle:
        model = OracleDenoiser(source, args.length)
    else:
        model = MaskedDiffusionTransformer.from_pretrained(args.model).eval()
        if model.config.vocab_size != source.vocab_size or model.config.seq_len != args.length:
            raise SystemExit(f"--model: vocab {model.config.vocab_size} / length {model.config.seq_len} do not "
                             f"match the source ({source.vocab_size}) / --length ({args.length})")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small per-step tensors: one thread avoids synchronisation overhead
    quality_table(model, source, args.length, args)
    torch.set_num_threads(threads)
    if not args.skip_cache:
        cache_table(args)


if __name__ == "__main__":
    main()
