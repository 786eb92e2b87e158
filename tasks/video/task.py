"""The video task: one masked-diffusion model over Moving-MNIST video tokens that generates,
predicts, interpolates and completes, by choosing which tokens are given (VDT, MotionAura).

    ddm run --config configs/tasks/video_mmnist_cpu.yaml

`prepare` fits the video tokenizer into <run_dir>/tokenizer (or loads it) and encodes the
videos of the tokenizer config's data section: the sprite tokenizer (one appearance, a position
per frame) or the spatio-temporal grid, each with its layout of the uses (`layouts.py`); `ddm
train` trains one denoiser on them, each example under a use drawn at random (its given tokens
are context, visible and never a target); `ddm eval` trains the per-frame digit judge and the autoregressive
baseline once, then runs every use on the same held-out videos and prints PSNR / SSIM
against the truth next to copy-the-last-frame, linear blend and the tokenizer's own bound,
the share of videos whose digit the judge names the same in every frame, and a per-frame
Fréchet proxy; it writes a strip and a GIF per use.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from datasets import Dataset

from ddm.config import ConfigError, bounded, positive
from ddm.experiment import load_experiment
from ddm.sampling import Sampler, sample_many
from ddm.task import DiffusionTask, register_task
from tokenizers_vq import tokenizer_for_task
from tokenizers_vq.data.images import image_splits

from ..image.classifier import load_or_train_classifier
from ..image.metrics import frechet_distance
from . import metrics, pictures
from .layouts import layout_for
from .uses import USES, check_use


@dataclass
class VideoConfig:
    name: str = "video"
    # a video tokenizer experiment (kind video or video_sprite): its data section is the task's data,
    # and it is fitted into <run_dir>/tokenizer when that folder is empty
    tokenizer_config: str = "configs/tokenizers/moving_mnist_sprite.yaml"
    context_frames: int = positive(4)  # frames given: prediction's first ones, interpolation's at each end
    hole_pixels: int = positive(16)  # completion: the side of the square hidden in every frame
    # completion with the sprite tokenizer: the measurement guidance's scale and anchor threshold
    completion_guidance: float = bounded(1.0, 0.0)
    completion_anchor: float = bounded(0.0, 0.0, 1.0)
    train_uses: list[str] = field(default_factory=lambda: list(USES))  # drawn uniformly per training example
    eval_videos: int = positive(100)  # held-out videos per use, and unconditional samples
    eval_steps: int = positive(16)  # sampling steps of every use
    classifier_steps: int = positive(1500)
    baseline: bool = True  # train and compare the autoregressive baseline (generation and prediction)


@register_task("video")
class VideoTask(DiffusionTask):
    Config = VideoConfig
    resumable = DiffusionTask.resumable + ("task.eval_videos", "task.eval_steps", "task.classifier_steps",
                                           "task.baseline", "task.completion_guidance", "task.completion_anchor")

    # ------------------------------------------------------------------ setup
    def check(self) -> None:
        t, m = self.config.task, self.config.model
        if not t.train_uses:
            raise ConfigError(f"task.train_uses: name at least one of {', '.join(USES)}")
        for use in t.train_uses:
            if use not in USES:
                raise ConfigError(f"task.train_uses: unknown use {use!r}; known: {', '.join(USES)}")
        if m.num_classes or m.cond_vocab_size or m.cond_embed_dim:
            raise ConfigError("model: the video task is unconditional (its uses give tokens, not a condition)")

    def setup(self) -> None:
        t, m = self.config.task, self.config.model
        data_exp = load_experiment(t.tokenizer_config)
        kind = data_exp.task.kind
        self.data_config = data_exp.data
        if self.data_config.num_digits != 1:
            raise ConfigError(f"{t.tokenizer_config}: data.num_digits={self.data_config.num_digits}; the per-frame "
                              "digit judge reads one digit a frame")
        if kind not in ("video", "video_sprite"):
            raise ConfigError(f"task.tokenizer_config: {t.tokenizer_config} is a {kind!r} tokenizer; the video task "
                              "reads 'video' or 'video_sprite'")
        self.tokenizer = tokenizer_for_task(t.tokenizer_config, None, self.run_dir, kind)
        self.layout = layout_for(kind, self.tokenizer, t)  # checks every use's mask now, not after training
        if self.tokenizer.vocab_size != m.vocab_size or self.layout.shape() != list(m.shape):
            raise ConfigError(f"model: vocab_size={m.vocab_size}, shape={m.shape} do not match the tokenizer at "
                              f"{self.run_dir / 'tokenizer'} (vocab {self.tokenizer.vocab_size}, tokens "
                              f"{self.layout.shape()}): a model must be trained on its own tokenizer's ids")
        splits = type(self.tokenizer).build_data(self.data_config)
        self.videos = splits
        self.ids = {name: self._encode_split(split) for name, split in splits.items()}
        held = splits["heldout"][:t.eval_videos]
        self.heldout, self.heldout_labels = held["x"], held["labels"][:, 0]

    @torch.no_grad()
    def _encode_split(self, split, batch_size: int = 200) -> torch.Tensor:
        return torch.cat([self.encode(split[i:i + batch_size]["x"]) for i in range(0, len(split), batch_size)])

    @torch.no_grad()
    def encode(self, videos: torch.Tensor) -> torch.Tensor:
        """Videos [B, 1, T, H, W] -> flat token ids [B, N] (the tokenizer names a wrong shape)."""
        return self.tokenizer.encode(videos).flat()

    @torch.no_grad()
    def decode(self, ids: torch.Tensor, batch_size: int = 200) -> torch.Tensor:
        return torch.cat([self.tokenizer.decode(ids[i:i + batch_size]) for i in range(0, len(ids), batch_size)])

    def train_dataset(self) -> Dataset:
        return Dataset.from_dict({"ids": self.ids["train"].numpy()}).with_format("torch")

    def eval_dataset(self) -> Dataset:
        return Dataset.from_dict({"ids": self.ids["heldout"].numpy()}).with_format("torch")

    def processors(self) -> list:
        """The layout's constraints (the sprite tokenizer: codes where codes go, coordinates where
        coordinates go), in training and sampling alike."""
        return self.layout.processors()

    def loss_fn(self):
        """The diffusion objective, each example under a use drawn from task.train_uses."""
        objective, t = super().loss_fn(), self.config.task

        def with_context(model, batch, generator):
            given = self.layout.training_context(t.train_uses, len(batch["ids"]), generator)
            return objective(model, {**batch, "context": given.to(batch["ids"].device)}, generator)

        return with_context

    # ------------------------------------------------------------------ the four uses
    def given(self, use: str) -> torch.Tensor:
        """[N] bool: the tokens `use` gives."""
        return self.layout.given(use)

    def fill(self, model, use: str, videos: torch.Tensor | None = None, count: int | None = None,
             steps: int | None = None, seed: int = 0):
        """Samples under `use`: (videos [B, 1, T, H, W], SampleResult, seconds). Generation draws `count`
        videos from nothing; the other uses keep the given tokens of `videos` and fill the rest."""
        check_use(use)
        fixed = None
        if use == "generation":
            if count is None or count < 1:
                raise ValueError("count: generation needs the number of videos to draw (>= 1)")
        else:
            if videos is None:
                raise ValueError(f"videos: {use} needs the videos whose given part it keeps")
            fixed = self.layout.fixed(videos, use)
            count = len(fixed.ids)
        sample_cfg = self.sample_config(steps=steps or self.config.task.eval_steps)
        sampler = Sampler.for_model(model, sample_cfg)
        model.eval()
        start = time.perf_counter()
        result = sample_many(model, count, sample_cfg.batch_size, sampler=sampler, fixed=fixed,
                             generator=torch.Generator().manual_seed(seed), processors=self.processors(),
                             measurement=None if videos is None else self.layout.measurement(videos, use))
        return self.decode(result.ids), result, time.perf_counter() - start

    def baseline_fill(self, baseline, use: str, videos: torch.Tensor | None = None, count: int | None = None,
                      seed: int = 0):
        """The autoregressive baseline under generation or prediction (it cannot read a future context):
        (videos, NFE, seconds)."""
        if use not in ("generation", "prediction"):
            raise ValueError(f"use: the autoregressive baseline does generation and prediction, not {use}")
        prompt = None
        if use == "prediction":  # the given first frames' tokens come first in the stream
            prompt = self.layout.fixed(videos, use).ids[:, :int(self.given("prediction").sum())]
            count = len(prompt)
        start = time.perf_counter()
        ids, nfe = self.baseline_sample(baseline, count, prompt=prompt, seed=seed, processors=self.processors())
        return self.decode(ids), nfe, time.perf_counter() - start

    # ------------------------------------------------------------------ evaluation
    def judge(self):
        """The digit judge (trained once into run_dir/classifier on MNIST digits drawn at the videos'
        digit size) and its features of training-video frames, the per-frame Fréchet reference."""
        if getattr(self, "_judge", None) is None:
            d = self.data_config
            splits = image_splits("mnist", d.digit_seed)
            size = d.digit_size
            images = {name: metrics.to_judge_size(metrics.resize_area(split[:]["x"], size))
                      for name, split in splits.items()}
            labels = {name: split[:]["label"] for name, split in splits.items()}
            classifier = load_or_train_classifier(self.run_dir / "classifier", images, labels,
                                                  self.config.task.classifier_steps, self.config.train.seed)
            reference = self.videos["train"][:min(500, len(self.videos["train"]))]["x"]
            # a crop with under a quarter of a real digit's mean ink shows no digit
            self.ink_floor = 0.25 * float(images["train"].mean())
            self._judge = classifier, classifier.predict(metrics.digit_crops(reference, size))[1]
        return self._judge

    def video_quality(self, videos: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, float]:
        """The judge frame by frame: identity kept in every frame, the true digit named by the majority
        of frames (when labels are given), and the per-frame Fréchet proxy."""
        classifier, reference = self.judge()
        frames = videos.shape[2]
        crops = metrics.digit_crops(videos, self.data_config.digit_size)
        predicted, feats = classifier.predict(crops)
        predicted = metrics.named_digits(predicted, crops, self.ink_floor)
        per_video = predicted.reshape(-1, frames)
        agreement = ((per_video == metrics.majority(predicted, frames)[:, None]) & (per_video != metrics.NO_DIGIT))
        out = {"identity_kept": float(metrics.identity_kept(predicted, frames).float().mean()),
               "frame_agreement": float(agreement.float().mean()),
               "digit_present": float((predicted != metrics.NO_DIGIT).float().mean()),
               "frechet_per_frame": frechet_distance(feats, reference)}
        if labels is not None:
            out["digit_kept"] = float((metrics.majority(predicted, frames) == labels).float().mean())
            out["frame_accuracy"] = float((predicted.reshape(-1, frames) == labels[:, None]).float().mean())
        return out

    def scored(self, use: str) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(pixels [1, 1, T, H, W] PSNR scores, frames [T] SSIM scores) for a use: what it generated."""
        if use == "generation":
            return None, None
        hidden = self.layout.hidden_pixels(use)
        frames = hidden.flatten(2).any(2)[0]  # a frame with any generated pixel
        return hidden[None], frames

    def fidelity(self, use: str, videos: torch.Tensor, truth: torch.Tensor) -> dict[str, float]:
        where, frames = self.scored(use)
        return {"psnr": float(metrics.psnr(videos, truth, where).mean()),
                "ssim": float(metrics.ssim(videos, truth, frames).mean())}

    def evaluate_model(self, model) -> dict[str, float]:
        t, cfg, run_dir = self.config.task, self.config, self.run_dir
        truth, labels = self.heldout, self.heldout_labels
        n = len(truth)
        recon = self.decode(self.encode(truth))
        rows: dict[str, dict[str, float]] = {
            "real held-out videos": {**self.video_quality(truth, labels)},
            "tokenizer reconstructions": {**self.video_quality(recon, labels),
                                          "psnr": float(metrics.psnr(recon, truth).mean()),
                                          "ssim": float(metrics.ssim(recon, truth).mean())}}
        baseline = self.baseline_model() if t.baseline else None
        shown = {}
        for use in USES:
            print(f"video: {use}, {n} videos", flush=True)  # each use samples for a minute or so on a CPU
            videos, result, seconds = self.fill(model, use, truth, count=n, seed=cfg.sample.seed)
            row = {**self.video_quality(videos, None if use == "generation" else labels),
                   "nfe": float(result.nfe), "ms_per_video": 1000 * seconds / n}
            rows[use], shown[use] = row, videos
            if use == "completion" and self.layout.guided_completion:  # what the visible pixels settled
                row["given_codes"], row["given_positions"] = self.layout.given_shares(self.layout.fixed(truth, use))
            if use != "generation":
                row.update(self.fidelity(use, videos, truth))
                rows[f"  {use}: tokenizer bound"] = self.fidelity(use, recon, truth)
            if use == "prediction":
                rows["  prediction: copy the last frame"] = self.fidelity(
                    use, metrics.copy_last_frame(truth, t.context_frames), truth)
            if use == "interpolation":
                rows["  interpolation: linear blend"] = self.fidelity(
                    use, metrics.linear_blend(truth, t.context_frames), truth)
            if baseline is not None and use in ("generation", "prediction"):
                ar, nfe, ar_seconds = self.baseline_fill(baseline, use, truth, count=n, seed=cfg.sample.seed)
                ar_row = {**self.video_quality(ar, None if use == "generation" else labels), "nfe": float(nfe),
                          "ms_per_video": 1000 * ar_seconds / n}
                if use != "generation":
                    ar_row.update(self.fidelity(use, ar, truth))
                rows[f"  {use}: autoregressive"] = ar_row

        paths = [pictures.use_strips({u: shown[u] for u in USES}, truth, self.scored, run_dir / "uses.png"),
                 pictures.video_gif(shown["generation"][:16], run_dir / "generation.gif"),
                 pictures.video_gif(torch.cat([truth[:4]] + [shown[u][:4] for u in USES[1:]]),
                                    run_dir / "uses.gif", columns=4)]
        print(self.report(rows, n))
        for p in paths:
            print(f"picture: {p}")
        metrics_out = {f"{name.strip()}/{k}": v for name, row in rows.items() for k, v in row.items()}
        return metrics_out

    def report(self, rows: dict, n: int) -> str:
        t, s, d = self.config.task, self.config.sample, self.data_config
        given = t.context_frames
        lines = [f"video task: Moving-MNIST, {d.frames} frames of {d.size}x{d.size} (one {d.digit_size}-pixel digit), "
                 f"tokens {'x'.join(map(str, self.layout.shape()))} (vocab {self.config.model.vocab_size}); {n} held-out videos "
                 f"(held-out digits) per use; {t.eval_steps} steps, {s.order} order, temperature {s.temperature}",
                 f"  prediction: the first {given} frames given; interpolation: the first and last {given}; "
                 f"completion: a {t.hole_pixels}-pixel square hidden in every frame"
                 f"{' (the tokens the visible pixels determine given; the pixels also guide the sampler)' if self.layout.guided_completion else ''}",
                 "  PSNR / SSIM: on what the use generated (SSIM over those frames); present: frames whose digit "
                 "crop holds at least a quarter of a real digit's ink (the others name no digit); identity: the "
                 "judge names one digit in every frame; agree: the share of frames naming the video's most named "
                 "digit; digit: the majority of frames name the true digit; frames: the share of frames naming it; "
                 "Fréchet: per frame, judge features of digit crops against training frames (a proxy, not FVD)",
                 f"  {'':<36} {'PSNR':>6} {'SSIM':>6} {'present':>8} {'identity':>9} {'agree':>6} {'digit':>6} "
                 f"{'frames':>7} {'Fréchet':>8} {'NFE':>5} {'ms/video':>9}"]

        def cell(r, k, fmt, width):
            return f"{format(r[k], fmt):>{width}}" if k in r else f"{'-':>{width}}"

        for name, r in rows.items():
            lines.append(f"  {name:<36} {cell(r, 'psnr', '.2f', 6)} {cell(r, 'ssim', '.3f', 6)} "
                         f"{cell(r, 'digit_present', '.1%', 8)} {cell(r, 'identity_kept', '.1%', 9)} "
                         f"{cell(r, 'frame_agreement', '.1%', 6)} {cell(r, 'digit_kept', '.1%', 6)} "
                         f"{cell(r, 'frame_accuracy', '.1%', 7)} "
                         f"{cell(r, 'frechet_per_frame', '.2f', 8)} {cell(r, 'nfe', '.0f', 5)} "
                         f"{cell(r, 'ms_per_video', '.0f', 9)}")
        if "given_codes" in rows.get("completion", {}):
            r = rows["completion"]
            lines.append(f"  completion: the visible pixels settled {r['given_codes']:.1%} of the sprite's codes and "
                         f"{r['given_positions']:.1%} of the positions (the model generated the rest)")
        return "\n".join(lines)


__all__ = ["VideoTask", "VideoConfig"]
