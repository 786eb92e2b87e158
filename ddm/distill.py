"""Learnable sampler distillation (LSD and LSD+): few-step samplers fitted to a many-step teacher.

The model's weights never change. A K-step student is the one sampling loop with learned
per-step coefficients (`ddm.sampling.learned`): a temperature, an order weight and a spread
weight per step (LSD), and the revealed fraction after each step (LSD+); a guided sampler also
learns its guidance scale per step (`learn_guidance`, on by default), and with `learn_mixing`
(`ddm distill --mixing`) each step learns how far to move its prediction along the change since
the step before (`ddm.sampling.filters.mix_previous`).

Teacher. The same model decoding one token per step (or `teacher_steps` groups, whichever
is more steps), by default (`teacher_order=auto`) in a uniformly random order: MDLM's exact
sampler of the model, and the config's own sampler at many steps where its order is random.

Divergence. The loss is a reverse term plus a forward one. The reverse term is the Monte-Carlo
estimate, per generated token, of

    E_student [ sum_i sum_{l in step i} log q_i(x_l | x_{t_i})  -  log p(x | sigma) ],

q_i the distribution the student's step i drew from (its temperature applied), p(x | sigma)
the model's probability of the student's sample decoded one token at a time in a random
order sigma (drawn per sample, shared by the two students of an SPSA pair). It is an upper
bound of KL(student's samples || teacher's samples) for orders that look only at the
revealed tokens (random, margin, entropy, spread): the first term is at least E log q(x)
(conditioning on which tokens each step revealed lowers entropy; equality for a fixed order
such as spread), and E_sigma log p(x | sigma) is at most the log of the teacher's
probability (Jensen). So no choice of order can game it: a student scores well only if its
samples are likely under the teacher and it keeps their entropy, which is the mode-seeking
side of the match that few-step errors (tokens drawn together that do not belong together)
show up on. The confidence order selects on the drawn token itself, which tilts what is
kept, and the bound does not hold for it; `auto` therefore keeps the earlier alignment
below for a confidence base order (the image and robot configs).

The reverse bound alone is mode-seeking: it charges samples the teacher finds unlikely far
more than missing some of the teacher's samples, so a student lowers it by cooling its steps,
and the samples' statistics narrow (pair TV rose on the synthetic task). The forward term,
weighted by `forward_weight` (1: the two KLs summed, Jeffreys' divergence), is

    E_teacher [ log p(x | sigma_T)  -  sum_i sum_{l in step i} log q_i(x_l | x_{t_i}) ],

the teacher's samples drawn once (a pool the SPSA iterations cycle through, and one batch per
held-out seed) with the log-probability of the path that drew them, and the student decoding
those samples by teacher forcing (`sample(forced=...)`: each step commits the given ids where
its order reveals, and records its probability of them). It is KL(teacher || student) between
the two samplers' paths, the orders aside: it charges the teacher samples that the student
would rarely draw. A greedy step's probability of a forced token is read at temperature 1
(its own would be 0 or 1). It is off by default (`forward_weight=0`): on the synthetic task at
K = 4, weight 1 traded the reverse bound's fewer impossible samples back (72.0% against 50.6%)
for no gain in pair TV (0.072 against 0.073 for the plain spread order), and
`benchmarks/distill_frontier.py` finds no coefficients that reach both halves of the gap there;
at K = 8, weight 0.6 (tuned on the test samples) kept the teacher's pair TV and closed 75% of
the impossible gap, where the reverse bound alone doubled pair TV.

`teacher_order=student` is the earlier alignment: the teacher reveals the tokens in the
student's order, the tokens of one student step one after another, so its states at the
student's step boundaries are the student's states, and the loss is the path KL of each
student step against the teacher's sub-steps. It is a KL to a teacher that moves with the
student's order, so it bounds no distance to one fixed sampler.

Gradients. None pass through the discrete steps: the coefficients (18 numbers at most) are
fitted by SPSA (simultaneous perturbation: the loss at theta + c*delta and theta - c*delta
on the same noise, i.e. the same generator seed for both students, gives a gradient
estimate) with Adam, from the best (on held-out seeds) of up to three starts: the plain
sampler, the plain sampler with the spread order, and the sampler saved for this budget
before (`distill_to_folder`: LSD's, when LSD+ follows it). The best iterate on held-out
seeds is kept, so distilling again never ends worse on the loss than the saved sampler.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import torch
from torch import Tensor

from .config import SampleConfig, from_dict, to_dict
from .sampling import Sampler, apply_processors
from .sampling.denoise import Denoise
from .sampling.guidance import ClassifierFreeGuidance
from .sampling.learned import StepCoefficients, check_distillable
from .sampling.orders import Order
from .sampling.posterior import check_fixed
from .sampling.remasking import Remasking
from .sampling.schedules import LinearSteps


@dataclass
class DistillConfig:
    steps: int  # K, the student's step budget
    plus: bool = False  # LSD+: learn the reveal schedule too
    teacher_steps: int = 128  # the teacher's steps (clamped to one token per step)
    teacher_order: str = "auto"  # random: a fixed teacher; student: in the student's order; auto: see the doc
    forward_weight: float = 0.0  # weight of the forward term (the student's likelihood of teacher samples)
    learn_guidance: bool = True  # guided samplers: learn a guidance scale per step too (False: keep the constant)
    learn_mixing: bool = False  # learn a mixing weight per step too (`filters.mix_previous`)
    teacher_batches: int = 8  # batches of teacher samples the forward term cycles through
    batch_size: int = 64  # student samples per loss evaluation
    iterations: int = 200
    max_seconds: float = 480.0  # stop early past this
    lr: float = 0.1  # Adam on the SPSA gradient
    perturbation: float = 0.2  # SPSA's c
    validate_every: int = 10
    validation_batches: int = 4
    seed: int = 0

    def check(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps: {self.steps}; a sampler needs at least 1 step")
        if self.teacher_order not in ("auto", "random", "student"):
            raise ValueError(f"teacher_order: {self.teacher_order!r}; expected 'auto', 'random' or 'student'")
        if not self.forward_weight >= 0:
            raise ValueError(f"forward_weight: {self.forward_weight}; expected >= 0 (0: the reverse bound alone)")
        if self.teacher_batches < 1:
            raise ValueError(f"teacher_batches: {self.teacher_batches}; expected >= 1")

    def validation_seeds(self) -> list[int]:
        """The held-out seeds that pick the start and the best iterate (one batch each)."""
        return [10_000_019 + self.seed * 1000 + i for i in range(self.validation_batches)]

    def resolved_teacher_order(self, base_order: str) -> str:
        if self.teacher_order != "auto":
            return self.teacher_order
        return "student" if base_order == "confidence" else "random"


@dataclass
class DistillResult:
    coefficients: StepCoefficients
    sample: SampleConfig  # the sampler parts distilled for (at the student's steps)
    report: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- the loss


@torch.no_grad()
def teacher_log_prob(model, ids: Tensor, committed_at: Tensor, sampler: Sampler, teacher_steps: int,
                     generator: torch.Generator, cond=None, processors: Sequence = ()) -> Tensor:
    """[B] log-probability of `ids` under the model decoding one group per teacher step, in the
    student's order (`committed_at`: its step per token, -1 for fixed tokens), ties in random order."""
    batch, n = ids.shape
    fixed = committed_at < 0
    tie = torch.rand(ids.shape, generator=generator, dtype=torch.float64).to(ids.device)
    key = torch.where(fixed, torch.full_like(tie, -1.0), committed_at.double() + tie)
    rank = key.argsort(1).argsort(1) - fixed.sum(1, keepdim=True)  # 0.. over the generated tokens; fixed < 0
    free = (~fixed).sum(1, keepdim=True)
    steps = min(teacher_steps, int(free.max()))
    guidance = ClassifierFreeGuidance(sampler.guidance_scale) if sampler.guidance_scale > 0 else None
    denoise = Denoise(model, cond, guidance, sampler.cache_prefix, reuse=False)
    mask_id = model.config.mask_id
    total = torch.zeros(batch, dtype=torch.float64, device=ids.device)
    for j in range(steps):
        start = torch.div(free * j, steps, rounding_mode="floor")
        stop = torch.div(free * (j + 1), steps, rounding_mode="floor")
        visible = rank < start
        x = ids.masked_fill(~visible, mask_id)
        t = sampler.process.inverse((start[:, 0] / free[:, 0].clamp_min(1)).double()).float()
        logits, _ = denoise(x, t)
        logp = torch.log_softmax(apply_processors(processors, logits, x).double(), -1)
        group = (rank >= start) & (rank < stop)
        total += (logp.gather(-1, ids[..., None])[..., 0] * group).sum(1)
    return total


def distill_loss(model, sampler: Sampler, batch: int, seed: int, teacher_steps: int, cond=None, fixed=None,
                 processors: Sequence = (), teacher_order: str = "random") -> Tensor:
    """[B] per-token loss of `batch` student samples drawn with `seed` (see the module doc): the KL
    bound against the random-order teacher, or with `teacher_order="student"` the path KL against
    the teacher in the student's order."""
    generator = torch.Generator().manual_seed(seed)
    result = sampler(model, batch, cond=cond, fixed=fixed, generator=generator, processors=processors)
    generated = result.committed_at >= 0
    # A step at temperature 0 takes the argmax: its tokens had probability 1 under the student.
    temperatures = torch.tensor(sampler.step_temperatures or [sampler.temperature], dtype=torch.float64)
    drawn = temperatures[result.committed_at.clamp(0, len(temperatures) - 1)] > 0
    student = _log_sum(result.confidence, generated & drawn)
    # One student step for every generated token: the teacher's ties, a uniformly random order.
    order = result.committed_at if teacher_order == "student" else result.committed_at.clamp_max(0)
    teacher = teacher_log_prob(model, result.ids, order, sampler, teacher_steps, generator, cond, processors)
    return (student - teacher) / generated.sum(1).clamp_min(1)


def teacher_sampler(plain: Sampler, teacher_steps: int, teacher_order: str) -> Sampler:
    """The fixed sampler whose samples the forward term scores: the random-order teacher of the
    reverse bound (one group per step, temperature 1, the plain sampler's guidance), or for
    `teacher_order="student"`, which has no fixed teacher, the plain sampler at the teacher's steps."""
    if teacher_order == "student":
        return replace(plain, steps=teacher_steps)
    return replace(plain, steps=teacher_steps, order=Order("random"), step_schedule=LinearSteps(),
                   remasking=Remasking(), temperature=1.0, mixing=0.0, top_k=0, top_p=1.0, step_temperatures=(), step_mixing=(),
                   step_guidance=())


@torch.no_grad()
def teacher_samples(model, teacher: Sampler, batch: int, seed: int, cond=None, fixed=None,
                    processors: Sequence = ()) -> tuple[Tensor, Tensor]:
    """`batch` samples of `teacher` drawn with `seed`, and [B] each one's log-probability per
    generated token along the path that drew it (for the random-order teacher, log p(x | sigma))."""
    result = teacher(model, batch, cond=cond, fixed=fixed, generator=torch.Generator().manual_seed(seed),
                     processors=processors)
    generated = result.committed_at >= 0
    return result.ids, _per_token(result.confidence, generated)


def forward_loss(model, sampler: Sampler, teacher: tuple[Tensor, Tensor], seed: int, cond=None, fixed=None,
                 processors: Sequence = ()) -> Tensor:
    """[B] per token: the teacher's path log-probability of its samples minus the student's, the
    student decoding them by teacher forcing (its order and noise drawn with `seed`). The mean is
    KL(teacher || student) up to the two samplers' order randomness; it charges a student for
    the teacher samples it would rarely draw, which the reverse bound does not see."""
    ids, teacher_logp = teacher
    result = sampler(model, ids.shape[0], cond=cond, fixed=fixed, generator=torch.Generator().manual_seed(seed),
                     processors=processors, forced=ids)
    return teacher_logp - _per_token(result.confidence, result.committed_at >= 0)


def _log_sum(probability: Tensor, mask: Tensor) -> Tensor:
    """[B] sum of log-probabilities over the masked positions (a zero counts as e^-690)."""
    return (probability.clamp_min(1e-300).log() * mask).sum(1)


def _per_token(confidence: Tensor, generated: Tensor) -> Tensor:
    return _log_sum(confidence, generated) / generated.sum(1).clamp_min(1)


# --------------------------------------------------------------------------- coefficients <-> vector


class Parameters:
    """Each per-step family is a quadratic in the step's progress u_i = i / (K - 1): 3 numbers per
    family however large K is, so that SPSA's noisy gradient has few directions to find:
    log temperature, order weight, asinh of the spread weight, (LSD+) the log of each step's
    share of the tokens, (guided samplers, `learn_guidance`) the log of each step's guidance
    scale over the sampler's own, and (`learn_mixing`) each step's mixing weight, starting from
    the sampler's own (the first step's has no earlier prediction to mix with, and does nothing).

    The spread weight is learned through asinh because its useful range spans orders of
    magnitude: near 0 it is linear (either sign is a dilated order, the reverse of bit reversal
    too), while the spread order itself needs neighbouring ranks to differ by far more than
    Gumbel noise, a weight of `EXACT_SPREAD` times the positions per step (the spread score
    moves by one per step's worth of ranks), which asinh reaches in a few units."""

    degree = 3
    EXACT_SPREAD = 12.0  # neighbouring ranks this far apart swap with probability 1 / (1 + e^12)

    MIXING = (-0.9, 3.0)  # the mixing weights' range

    def __init__(self, cfg: SampleConfig, plain: Sampler, plus: bool, positions: int, guidance: bool = False,
                 mixing: bool = False):
        k = cfg.steps
        self.k, self.plus, self.mixing, self.plain_mixing = k, plus, mixing, plain.mixing
        self.guidance = plain.guidance_scale if guidance and plain.guidance_scale > 0 else 0.0
        self.exact_spread = self.EXACT_SPREAD * positions / k
        u = torch.linspace(0, 1, k, dtype=torch.float64) if k > 1 else torch.zeros(1, dtype=torch.float64)
        self.basis = torch.stack([u ** d for d in range(self.degree)], 1)  # [K, 3]
        # The plain sampler's order as a weight: random is 0; annealed Gumbel noise g is about
        # 1 / (its mean over the steps); no noise, a large weight.
        mean_gumbel = cfg.gumbel_temperature * (k - 1) / (2 * k)
        weight = 0.0 if cfg.order == "random" else (1.0 / mean_gumbel if mean_gumbel > 0.2 else 5.0)
        families = [self.fit(torch.full((k,), math.log(max(cfg.temperature, 0.05)), dtype=torch.float64)),
                    self.fit(torch.full((k,), weight, dtype=torch.float64)),
                    torch.zeros(self.degree, dtype=torch.float64)]  # spread: starts off, as in the plain sampler
        if plus:
            alphas = torch.tensor(plain.step_schedule.alphas(k), dtype=torch.float64)
            families.append(self.fit((alphas[1:] - alphas[:-1]).clamp_min(1e-3).log()))
        if self.guidance:
            families.append(torch.zeros(self.degree, dtype=torch.float64))  # the sampler's own scale
        if mixing:
            families.append(self.fit(torch.full((k,), self.plain_mixing, dtype=torch.float64)))
        self.initial = torch.cat(families)

    def starts(self) -> list[Tensor]:
        """Where SPSA may start: the plain sampler, and the plain sampler with the spread order,
        which small steps from the plain sampler take long to find. The spread start must be the
        spread order itself: a token that leaks into a neighbour's step costs much, because
        tokens next to each other then get drawn together."""
        spread = self.initial.clone()
        spread[2 * self.degree:3 * self.degree] = self.fit(torch.full((self.k,), math.asinh(self.exact_spread),
                                                                        dtype=torch.float64))
        return [self.initial, spread]

    def theta_of(self, c: StepCoefficients, plain_alphas: list[float]) -> Tensor:
        """The parameters closest to saved coefficients (exact for coefficients this class made)."""
        f64 = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
        families = [self.fit(f64(c.temperature).clamp_min(0.05).log()), self.fit(f64(c.order_weight)),
                    self.fit(f64(c.spread_weight or [0.0] * self.k).asinh())]
        if self.plus:
            alphas = f64(c.alphas or plain_alphas)
            families.append(self.fit((alphas[1:] - alphas[:-1]).clamp_min(1e-3).log()))
        if self.guidance:
            scales = f64(c.guidance or [self.guidance] * self.k)
            families.append(self.fit((scales / self.guidance).clamp_min(1e-2).log()))
        if self.mixing:
            families.append(self.fit(f64(c.mixing or [self.plain_mixing] * self.k)))
        return torch.cat(families)

    def fit(self, values: Tensor) -> Tensor:
        return torch.linalg.lstsq(self.basis, values[:, None]).solution[:, 0]

    def per_step(self, theta: Tensor, family: int) -> Tensor:
        return self.basis @ theta[family * self.degree:(family + 1) * self.degree]

    def coefficients(self, theta: Tensor) -> StepCoefficients:
        temperature = self.per_step(theta, 0).clamp(math.log(0.05), math.log(5.0)).exp().tolist()
        weight = self.per_step(theta, 1).clamp(-50.0, 50.0).tolist()
        bound = math.asinh(4 * self.exact_spread)
        spread = self.per_step(theta, 2).clamp(-bound, bound).sinh().tolist()
        alphas = None
        if self.plus:
            share = torch.softmax(self.per_step(theta, 3).clamp(-8.0, 8.0), 0)
            alphas = [0.0] + share.cumsum(0).tolist()
            alphas[-1] = 1.0
            alphas = [min(a, 1.0) for a in alphas]
        guidance = mixing = None
        family = 3 + self.plus  # the next family: after the alphas' (if any)
        if self.guidance:
            log_ratio = self.per_step(theta, family).clamp(math.log(1e-2), math.log(8.0))
            guidance = (self.guidance * log_ratio.exp()).tolist()
            family += 1
        if self.mixing:
            mixing = self.per_step(theta, family).clamp(*self.MIXING).tolist()
        return StepCoefficients(temperature, weight, spread, alphas, guidance, mixing)


# --------------------------------------------------------------------------- SPSA


def distill(model, sample_cfg: SampleConfig, cfg: DistillConfig, cond_fn=None, fixed_fn=None,
            processors: Sequence = (), progress: bool = True, saved: StepCoefficients | None = None) -> DistillResult:
    """Learn the coefficients of a `cfg.steps`-step sampler for `model` (see the module doc).

    `cond_fn(n)` / `fixed_fn(n)` give the conditions / fixed tokens of n samples (a task's
    `sample_conditions` / `sample_fixed`), or None. `saved`: coefficients distilled before for
    this budget (LSD's, for LSD+), a third start beside the plain and spread ones, so that
    distilling again, or LSD+ after LSD, keeps what was learned when nothing better is found."""
    from tqdm.auto import tqdm

    cfg.check()
    sample_cfg = from_dict(SampleConfig, {**to_dict(sample_cfg), "steps": cfg.steps, "learned": False}, "sample")
    check_distillable(sample_cfg)
    plain = Sampler.for_model(model, sample_cfg)
    cond = cond_fn(cfg.batch_size) if cond_fn else None
    fixed = fixed_fn(cfg.batch_size) if fixed_fn else None
    given = 0 if fixed is None else int(check_fixed(fixed, cfg.batch_size, model.config.seq_len,
                                                    model.config.vocab_size).mask.sum(1).min())
    tokens = model.config.seq_len - given
    if cfg.steps >= min(cfg.teacher_steps, tokens):
        raise ValueError(f"steps: {cfg.steps} is not fewer than the teacher's {min(cfg.teacher_steps, tokens)} steps "
                         f"(teacher_steps={cfg.teacher_steps}, at most one token per step over {tokens} tokens)")
    params = Parameters(sample_cfg, plain, cfg.plus, model.config.seq_len, cfg.learn_guidance, cfg.learn_mixing)
    teacher_order = cfg.resolved_teacher_order(sample_cfg.order)
    model.eval()

    def student(theta: Tensor) -> Sampler:
        return plain.with_coefficients(params.coefficients(theta), sample_cfg.order)

    validation_seeds = cfg.validation_seeds()
    start = time.perf_counter()
    student(params.initial)  # refuses what the coefficients cannot express before any sampling
    # The forward term's teacher samples, drawn once: a pool to cycle through, and one per validation seed.
    teacher = teacher_sampler(plain, min(cfg.teacher_steps, tokens), teacher_order)

    def draw_teacher(seeds: list[int]) -> list:
        if cfg.forward_weight == 0:
            return [None] * len(seeds)
        return [teacher_samples(model, teacher, cfg.batch_size, s, cond, fixed, processors) for s in seeds]

    pool = draw_teacher([20_000_003 + cfg.seed * 1000 + j for j in range(cfg.teacher_batches)])
    held_out = draw_teacher([s + 7 for s in validation_seeds])

    def terms(sampler: Sampler, seed: int, samples) -> tuple[float, float]:
        """(reverse bound, forward term) on one batch, the forward term 0 where its weight is."""
        reverse = float(distill_loss(model, sampler, cfg.batch_size, seed, cfg.teacher_steps, cond, fixed,
                                     processors, teacher_order).mean())
        if samples is None:
            return reverse, 0.0
        return reverse, float(forward_loss(model, sampler, samples, seed, cond, fixed, processors).mean())

    def total(reverse_forward: tuple[float, float]) -> float:
        return reverse_forward[0] + cfg.forward_weight * reverse_forward[1]

    def loss(sampler: Sampler, seed: int, samples) -> float:
        return total(terms(sampler, seed, samples))

    def validate(sampler: Sampler) -> tuple[float, float]:
        """(reverse, forward) on the held-out seeds; `total` of it is the validation loss."""
        values = [terms(sampler, s, t) for s, t in zip(validation_seeds, held_out)]
        return tuple(sum(v) / len(values) for v in zip(*values))

    plain_terms = validate(plain)
    starts = params.starts()
    if saved is not None and saved.steps == cfg.steps:
        starts.append(params.theta_of(saved, plain.step_schedule.alphas(cfg.steps)))
    initial_terms, theta = min(((validate(student(t)), t.clone()) for t in starts), key=lambda s: total(s[0]))
    best = (initial_terms, theta.clone(), 0)  # the held-out terms of the best iterate, it, its iteration
    m, v = torch.zeros_like(theta), torch.zeros_like(theta)
    signs = torch.Generator().manual_seed(cfg.seed)
    history = []
    bar = tqdm(range(1, cfg.iterations + 1), desc=f"distill K={cfg.steps}{' (LSD+)' if cfg.plus else ''}",
               disable=not progress)
    for it in bar:
        delta = torch.randint(0, 2, theta.shape, generator=signs).double() * 2 - 1
        seed = cfg.seed * 1_000_003 + it
        samples = pool[it % len(pool)]
        up = loss(student(theta + cfg.perturbation * delta), seed, samples)
        down = loss(student(theta - cfg.perturbation * delta), seed, samples)
        grad = (up - down) / (2 * cfg.perturbation) * delta
        m = 0.9 * m + 0.1 * grad
        v = 0.999 * v + 0.001 * grad * grad
        theta = theta - cfg.lr * (m / (1 - 0.9 ** it)) / ((v / (1 - 0.999 ** it)).sqrt() + 1e-8)
        out_of_time = time.perf_counter() - start > cfg.max_seconds
        if it % cfg.validate_every == 0 or it == cfg.iterations or out_of_time:
            now = validate(student(theta))
            history.append({"iteration": it, "validation_loss": total(now)})
            if total(now) < total(best[0]):
                best = (now, theta.clone(), it)
            bar.set_postfix(loss=f"{total(now):.4f}", best=f"{total(best[0]):.4f}")
        if out_of_time:
            break
    coefficients = params.coefficients(best[1])
    report = {"method": "lsd+" if cfg.plus else "lsd", "teacher_steps": cfg.teacher_steps,
              "learn_guidance": bool(params.guidance), "learn_mixing": cfg.learn_mixing,
              "teacher_order": teacher_order, "forward_weight": cfg.forward_weight,
              "plain_loss": total(plain_terms), "initial_loss": total(initial_terms), "learned_loss": total(best[0]),
              "plain_terms": dict(zip(("reverse", "forward"), plain_terms)),
              "learned_terms": dict(zip(("reverse", "forward"), best[0])),
              "best_iteration": best[2], "iterations": it, "seconds": time.perf_counter() - start,
              "history": history, "config": to_dict(cfg)}
    return DistillResult(coefficients, sample_cfg, report)


def distill_to_folder(model, model_dir, sample_cfg: SampleConfig, cfg: DistillConfig, cond_fn=None, fixed_fn=None,
                      processors: Sequence = ()) -> dict[str, Any]:
    """`distill` at cfg.steps, also from the coefficients saved there before if any, the result saved
    in `model_dir` (where `sample.learned=true` finds it); returns what `ddm distill` prints."""
    from .sampling.learned import save_learned, saved_coefficients

    before = saved_coefficients(model_dir, replace(sample_cfg, steps=cfg.steps), model)
    result = distill(model, sample_cfg, cfg, cond_fn, fixed_fn, processors, saved=before)
    path = save_learned(model_dir, result.sample, model, result.coefficients, result.report)
    r = result.report
    return {"method": r["method"], "teacher_order": r["teacher_order"], "steps": cfg.steps,
            "loss_plain": r["plain_loss"], "loss_learned": r["learned_loss"], "forward_weight": r["forward_weight"],
            "reverse_learned": r["learned_terms"]["reverse"], "forward_learned": r["learned_terms"]["forward"],
            "seconds": r["seconds"],
            "written": str(path)}
