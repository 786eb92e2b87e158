"""The motion task: masked diffusion over VQ tokens of human motion, conditioned on an action label
(the clip's name) or on a written sentence.

    ddm run --config configs/tasks/motion_cpu.yaml

`prepare` fits the motion tokenizer into <run_dir>/tokenizer (or loads it) and encodes every
`task.frames`-frame window of the training split (random headings, mirrored twins, as the
tokenizer was fitted); each token gets an importance (`importance.py`) for priority masking
(`diffusion.priority_strength`). `ddm train` trains the class-conditional denoiser. `ddm eval`
trains once, each into its own folder under run_dir: the judge classifier, the ablation with
uniform masking (priority_strength 0), the sentence-conditional model (MiniLM vectors) and the
autoregressive baseline (same transformer, causal, same steps), then prints one table
(requested-label accuracy, Fréchet proxy next to the real-vs-real floor, diversity, foot
skating, ground penetration, joint-limit violations, NFE, time), in-betweening figures against
linear interpolation, and writes stick-figure GIFs.

Model ids are the tokenizer's ids less their group's offset: every group / residual level draws
from one codebook of `codebook_size` codes, so the model's vocabulary is that size and no
position can name another group's code (its position says which group it is).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from datasets import Dataset
from torch import Tensor

from ddm.config import ConfigError, bounded, positive
from ddm.experiment import load_experiment
from ddm.model import Condition
from ddm.objectives import elbo_bits_per_token
from ddm.process import MaskingProcess
from ddm.sampling import Sampler, sample_many
from ddm.task import DiffusionTask, register_task
from tokenizers_vq import tokenizer_for_task
from tokenizers_vq.data.motion import pose_to_features

from . import pictures
from .classifier import load_or_train_classifier
from .data import PARAPHRASES, SENTENCES, canonical, check_sentences, label_ids, load_splits, windows
from .importance import velocity_importance
from .inbetween import blend_seams, ends_kept, fixed_tokens, token_mask
from .kin import body_points
from .metrics import JointRanges, foot_skating, frechet_distance, ground_penetration, mean_pairwise_distance
from .text import TEXT_DIM, encode_sentences


@dataclass
class MotionConfig:
    name: str = "motion"
    tokenizer_config: str = "configs/tokenizers/motion_gen.yaml"  # fitted into <run_dir>/tokenizer when missing
    tokenizer_path: str = ""  # or an already trained motion tokenizer folder (the data split is still the config's)
    frames: int = positive(16)  # the generation window, frames at the data's fps (a multiple of the downsample)
    importance: Literal["velocity", "none"] = "velocity"  # per-token priority scores (importance.py)
    classifier_window: int = positive(8)  # frames per judge crop (held-out parts are 4-26 frames long)
    classifier_stride: int = positive(4)  # frames between a motion's judge crops
    classifier_steps: int = positive(1000)
    samples_per_class: int = positive(20)  # generated motions per label (and per sentence) for the figures
    eval_steps: list[int] = field(default_factory=lambda: [8, 16])  # step budgets of the diffusion rows
    ablation: bool = True  # train and compare the same model with uniform masking (priority_strength 0)
    text: bool = True  # train and evaluate the sentence-conditional model
    baseline: bool = True  # train and compare the autoregressive baseline
    inbetween_keep: int = positive(4)  # in-betweening keeps this many frames at each end of a window
    contact_height: float = bounded(0.05, 0.0)  # m: a foot centre below this is on the ground (foot skating)
    limit_tolerance_deg: float = bounded(5.0, 0.0)  # joint angles this far outside the training range count
    gif_motions: int = positive(15)  # motions per GIF


@register_task("motion")
class MotionTask(DiffusionTask):
    Config = MotionConfig
    resumable = DiffusionTask.resumable + ("task.classifier_stride", "task.samples_per_class", "task.eval_steps",
                                           "task.ablation", "task.text", "task.baseline", "task.inbetween_keep",
                                           "task.contact_height", "task.limit_tolerance_deg", "task.gif_motions")

    # ------------------------------------------------------------------ setup
    def check(self) -> None:
        m, t, d = self.config.model, self.config.task, self.config.diffusion
        if m.num_classes < 2:
            raise ConfigError("model.num_classes: the motion task is label-conditional (set it to the number of clips)")
        if any(s < 1 for s in t.eval_steps) or not t.eval_steps:
            raise ConfigError(f"task.eval_steps: step budgets must be >= 1, got {t.eval_steps}")
        if t.importance == "none" and d.priority_strength > 0:
            raise ConfigError("diffusion.priority_strength: priority masking needs task.importance (it is 'none')")
        if t.classifier_window > t.frames:
            raise ConfigError(f"task.classifier_window: {t.classifier_window} frames is longer than task.frames="
                              f"{t.frames}, so the judge could not read a sample")
        if m.continuous_dim or m.cond_embed_dim or m.cond_vocab_size:
            raise ConfigError("model: the motion model is conditioned on classes only (the sentence model is built "
                              "from it by the task); set model.cond_embed_dim, cond_vocab_size, continuous_dim to 0")

    def setup(self) -> None:
        t, m = self.config.task, self.config.model
        data = load_experiment(t.tokenizer_config).data  # the split the tokenizer was fitted on
        self.fps = data.fps
        self.tokenizer = self._tokenizer()
        self.tokenizer.eval()
        q = self.tokenizer.quantizer
        self.downsample, self.groups, self.codes = self.tokenizer.config.downsample, q.num_codebooks, q.codebook_size
        if t.frames % self.downsample:
            raise ConfigError(f"task.frames: {t.frames} is not a multiple of the tokenizer's downsample "
                              f"{self.downsample} (frames per token step)")
        grid = [t.frames // self.downsample, self.groups]
        if m.vocab_size != self.codes or list(m.shape) != grid:
            raise ConfigError(f"model: vocab_size={m.vocab_size}, shape={m.shape} do not match the tokenizer at "
                              f"{self._tokenizer_dir()} and task.frames={t.frames}: expected vocab_size={self.codes} "
                              f"(codes per group) and shape={grid} (token steps x groups)")
        self.splits = load_splits(data)
        self.names = self.splits.names
        if m.num_classes != len(self.names):
            raise ConfigError(f"model.num_classes: {m.num_classes}, but the data has {len(self.names)} clips "
                              f"({', '.join(self.names)})")
        # Generation windows of the training split and their mirror twins, each turned to face +x at its
        # first frame: the heading is not the action, and random headings (as the tokenizer was fitted
        # with) make every token differ between copies of one motion. Measured at 2,000 steps (1000-code
        # tokenizer, guidance 3): final flat loss 5.80 -> 4.52 nats, samples' foot skating 245 -> 183 cm/s,
        # label accuracy 0.80 -> 0.71 (one seed each).
        x, self.train_y = windows(self.splits.train, t.frames, data.stride, data.mirror)
        if not len(x):
            raise ConfigError(f"task.frames: {t.frames} frames is longer than every clip's training part")
        self.train_x = canonical(x)
        # Held-out windows of the same length exist only for the longer clips (5 of 15 at 16 frames).
        x, self.heldout_y = windows(self.splits.heldout, t.frames)
        self.heldout_x = canonical(x) if len(x) else x
        self.ids = {"train": self.encode(self.train_x)}
        if len(self.heldout_x):
            self.ids["heldout"] = self.encode(self.heldout_x)
        self.importance = {k: self._importance(x) for k, x in (("train", self.train_x), ("heldout", self.heldout_x))
                           if len(x)}

    def _tokenizer_dir(self) -> Path:
        t = self.config.task
        return Path(t.tokenizer_path) if t.tokenizer_path else self.run_dir / "tokenizer"

    def _tokenizer(self):
        t = self.config.task
        return tokenizer_for_task(t.tokenizer_config, t.tokenizer_path, self.run_dir, "motion")

    def _importance(self, x: Tensor) -> Tensor | None:
        if self.config.task.importance == "none":
            return None
        return velocity_importance(x, self.downsample, self.groups, self.fps)

    # ------------------------------------------------------------------ tokens <-> motion
    def _offsets(self) -> Tensor:
        return torch.arange(self.groups) * self.codes

    @torch.no_grad()
    def encode(self, x: Tensor, batch_size: int = 1000) -> Tensor:
        """Motion features [B, T, 65] -> model ids [B, (T / downsample) * groups], each in [0, codebook_size)."""
        ids = torch.cat([self.tokenizer.encode(x[i:i + batch_size]).ids for i in range(0, len(x), batch_size)])
        return (ids - self._offsets()).flatten(1)

    @torch.no_grad()
    def decode(self, ids: Tensor, batch_size: int = 1000) -> Tensor:
        """Model ids [B, N] -> motion features [B, (N / groups) * downsample, 65]."""
        tok_ids = ids.reshape(ids.shape[0], -1, self.groups) + self._offsets()
        return torch.cat([self.tokenizer.decode(tok_ids[i:i + batch_size]) for i in range(0, len(ids), batch_size)])

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """One motion [T, 65] of any length through the tokenizer (edge-padded to whole token steps)."""
        t, d = x.shape[0], self.downsample
        padded = torch.cat([x, x[-1:].expand(-t % d, -1)]) if t % d else x
        return self.decode(self.encode(padded[None]))[0, :t]

    # ------------------------------------------------------------------ data for the trainer
    def _columns(self, split: str) -> dict:
        columns = {"ids": self.ids[split].numpy()}
        if self.importance.get(split) is not None:
            columns["importance"] = self.importance[split].numpy()
        return columns

    def train_dataset(self) -> Dataset:
        return Dataset.from_dict({**self._columns("train"), "classes": self.train_y.numpy()}).with_format("torch")

    def eval_dataset(self):
        if "heldout" not in self.ids:
            return None
        return Dataset.from_dict({**self._columns("heldout"), "classes": self.heldout_y.numpy()}).with_format("torch")

    def _text_dataset(self, split: str) -> Dataset:
        y = self.train_y if split == "train" else self.heldout_y
        vectors = encode_sentences([SENTENCES[n] for n in self.names])  # [C, 1, 384]
        return Dataset.from_dict({**self._columns(split), "cond_embeddings": vectors[y].numpy()}).with_format("torch")

    def sample_conditions(self, n: int) -> Condition:
        return Condition(classes=torch.arange(n) % self.config.model.num_classes)

    # ------------------------------------------------------------------ generation
    def check_frames(self, frames: int | None) -> int:
        """The number of frames to generate: at most the model's window (a longer motion is an error)."""
        window = self.config.task.frames
        if frames is None:
            return window
        if not isinstance(frames, int) or isinstance(frames, bool) or frames < 1:
            raise ValueError(f"frames: expected a positive number of frames, got {frames!r}")
        if frames > window:
            raise ValueError(f"frames: {frames} frames ({frames / self.fps:.2f} s) is longer than this model's window "
                             f"of {window} frames ({window / self.fps:.2f} s at {self.fps:g} fps); generate at most "
                             f"{window}, or train with a longer task.frames")
        return frames

    def _sample(self, model, cond: Condition, steps: int | None, seed: int, fixed=None, return_trace: bool = False):
        overrides = {} if steps is None else {"steps": steps}
        sample_cfg = self.sample_config(**overrides)
        sampler = Sampler.for_model(model, sample_cfg)
        model.eval()
        g = torch.Generator().manual_seed(seed)
        start = time.perf_counter()
        if return_trace:
            result = sampler(model, cond=cond, fixed=fixed, generator=g, return_trace=True)
        else:
            result = sample_many(model, cond.batch_size, sample_cfg.batch_size, sampler=sampler, cond=cond,
                                 fixed=fixed, generator=g)
        return result, time.perf_counter() - start

    def generate_motion(self, model, labels, frames: int | None = None, steps: int | None = None, seed: int = 0):
        """Motions for action `labels` (clip names or class ids): (features [B, frames, 65], SampleResult,
        seconds). A window is generated and its first `frames` frames kept."""
        frames = self.check_frames(frames)
        classes = label_ids(labels, self.names)
        result, seconds = self._sample(model, Condition(classes=classes), steps, seed)
        return self.decode(result.ids)[:, :frames], result, seconds

    def generate_from_text(self, model, sentences, frames: int | None = None, steps: int | None = None,
                           seed: int = 0):
        """Motions for written `sentences` with the sentence-conditional model (`text_model()`)."""
        frames = self.check_frames(frames)
        sentences = check_sentences(sentences)
        if model.config.cond_embed_dim != TEXT_DIM:
            raise ValueError(f"model: not a sentence-conditional model (cond_embed_dim={model.config.cond_embed_dim}, "
                             f"expected {TEXT_DIM}); use text_model()")
        result, seconds = self._sample(model, Condition(embeddings=encode_sentences(sentences)), steps, seed)
        return self.decode(result.ids)[:, :frames], result, seconds

    def inbetween(self, model, x: Tensor, labels, hidden: Tensor | None = None, steps: int | None = None,
                  seed: int = 0, blend: bool = True) -> tuple[Tensor, Tensor, float]:
        """Fill the hidden frames of real motions x [B, frames, 65] between the kept ones, conditioned on
        `labels`: (motions with the kept frames as given, hidden [B, frames], seconds). `hidden`
        defaults to all but `task.inbetween_keep` frames at each end. `blend`: move the generated frames
        by the decoder's error on the kept frames beside them (`inbetween.blend_seams`)."""
        decoded, hidden, seconds = self._fill(model, x, labels, hidden, steps, seed)
        return _keep_given(decoded, x, hidden, blend), hidden, seconds

    def _fill(self, model, x: Tensor, labels, hidden: Tensor | None, steps: int | None, seed: int
              ) -> tuple[Tensor, Tensor, float]:
        """`inbetween`'s sampling: (the decoded motions [B, frames, 65], their kept frames as the tokenizer
        gives them back; hidden; seconds)."""
        t = self.config.task
        if x.ndim != 3 or tuple(x.shape[1:]) != (t.frames, 65):
            raise ValueError(f"x: expected motions [B, {t.frames}, 65] (the model's window), got {tuple(x.shape)}")
        if hidden is None:
            hidden = ends_kept(len(x), t.frames, t.inbetween_keep)
        if hidden.shape != x.shape[:2]:
            raise ValueError(f"hidden: expected [B, frames] = {tuple(x.shape[:2])}, got {tuple(hidden.shape)}")
        generated = token_mask(hidden, self.downsample, self.groups)
        classes = label_ids(labels, self.names)
        fixed = fixed_tokens(self.encode(x), generated)
        result, seconds = self._sample(model, Condition(classes=classes), steps, seed, fixed=fixed)
        return self.decode(result.ids), hidden, seconds

    # ------------------------------------------------------------------ the other models
    def _variant(self, name: str, model_cfg, diffusion_cfg, dataset):
        """A denoiser like the main one but for `model_cfg` / `diffusion_cfg`, trained once (same steps)
        into run_dir/<name>/model."""
        from ddm.hub import load_pretrained
        from ddm.model import build_denoiser
        from ddm.objectives import DiffusionObjective
        from ddm.training import Trainer

        directory = self.run_dir / name / "model"
        if (directory / "config.json").is_file():
            return load_pretrained(directory, expected_config=model_cfg).eval()
        torch.manual_seed(self.config.train.seed)
        model = build_denoiser(model_cfg, diffusion_cfg, self.config.sample, self.model_task_section())
        print(f"training the {name} model ({model.num_parameters / 1e6:.2f}M parameters, "
              f"{self.config.train.steps} steps)", flush=True)
        objective = DiffusionObjective(MaskingProcess.from_config(diffusion_cfg, model_cfg.mask_id), diffusion_cfg)
        Trainer(model, objective, dataset, self.config.train, self.run_dir / name,
                tokens_per_example=model_cfg.seq_len).train_to_end(save_to=directory)
        return model.eval()

    def uniform_model(self):
        """The ablation: the same model trained with uniform masking (diffusion.priority_strength 0)."""
        diffusion = dataclasses.replace(self.config.diffusion, priority_strength=0.0)
        return self._variant("uniform", self.config.model, diffusion, self.train_dataset())

    def text_model(self):
        """The sentence-conditional model: the same transformer with one MiniLM vector as its condition."""
        cfg = dataclasses.replace(self.config.model, num_classes=0, cond_embed_dim=TEXT_DIM)
        return self._variant("text", cfg, self.config.diffusion, self._text_dataset("train"))

    def heldout_elbo_of(self, model, dataset) -> float | None:
        """Negative ELBO (bits per token) of held-out windows under the model's own masking process."""
        if dataset is None:
            return None
        process = MaskingProcess.from_config(model.diffusion, model.config.mask_id)
        batch = {k: v for k, v in dataset[:].items()}
        return elbo_bits_per_token(model, [batch], process, torch.Generator().manual_seed(0), repeats=8)

    # ------------------------------------------------------------------ evaluation
    def judge(self):
        """The judge classifier (trained once into run_dir/classifier) and the crops it is measured on."""
        if getattr(self, "_judge", None) is None:
            t = self.config.task
            train_crops, train_labels = windows(self.splits.train, t.classifier_window)
            held_crops, held_labels = windows(self.splits.heldout, t.classifier_window)
            classifier = load_or_train_classifier(self.run_dir / "classifier", canonical(train_crops), train_labels,
                                                  len(self.names), t.classifier_steps, self.config.train.seed)
            _, _, train_feats = classifier.judge(train_crops, t.classifier_stride)
            self._judge = classifier, (train_feats[:, 0], train_labels), (held_crops, held_labels)
            self.ranges = JointRanges.fit(torch.cat([p_features(p) for p in self.splits.train])[None])
        return self._judge

    def quality(self, motions: list[Tensor] | Tensor, labels: Tensor) -> dict[str, float]:
        """The judge's and the physical figures of motions ([B, T, 65], or a list of [T_i, 65]) meant as `labels`.
        Diversity (motions of one length only, else NaN): the mean distance between the judge features of
        two motions of the same label, crop k against crop k."""
        classifier, (ref_feats, ref_labels), _ = self.judge()
        t = self.config.task
        groups = [motions] if isinstance(motions, Tensor) else [m[None] for m in motions]
        label_groups = [labels] if isinstance(motions, Tensor) else [labels[i:i + 1] for i in range(len(motions))]
        right, total, feats, feat_labels, diversity = 0, 0, [], [], float("nan")
        physical = {"skating_cm_s": 0.0, "penetration_cm": 0.0, "limits": 0.0}
        steps = frames = grounded = 0
        for x, y in zip(groups, label_groups):
            if x.shape[1] >= t.classifier_window:
                predicted, _, f = classifier.judge(x, t.classifier_stride)
                right, total = right + int((predicted == y).sum()), total + len(y)
                feats.append(f.flatten(0, 1))
                feat_labels.append(y.repeat_interleave(f.shape[1]))
                if isinstance(motions, Tensor):  # between motions of a label, crop k against crop k
                    diversity = sum(mean_pairwise_distance(f[:, k], y) for k in range(f.shape[1])) / f.shape[1]
            skate = foot_skating(x, self.fps, t.contact_height)
            n_steps = x.shape[0] * (x.shape[1] - 1) * 2
            n_ground = skate["contact"] * n_steps
            physical["skating_cm_s"] += skate["skating_cm_s"] * n_ground
            grounded += n_ground
            steps += n_steps
            n_frames = x.shape[0] * x.shape[1]
            physical["penetration_cm"] += ground_penetration(x)["penetration_cm"] * n_frames
            physical["limits"] += self.ranges.violations(x, t.limit_tolerance_deg) * n_frames
            frames += n_frames
        judged = {"accuracy": float("nan"), "frechet": float("nan"), "diversity": float("nan")}
        if feats:  # some motion is as long as the judge's window
            feats, feat_labels = torch.cat(feats), torch.cat(feat_labels)
            reference = torch.isin(ref_labels, feat_labels.unique())  # the training crops of the same labels
            judged = {"accuracy": right / total,
                      "frechet": frechet_distance(_balanced(feats, feat_labels),
                                                  _balanced(ref_feats[reference], ref_labels[reference])),
                      "diversity": diversity}
        return {**judged,
                "skating_cm_s": physical["skating_cm_s"] / max(grounded, 1e-9),
                "contact": grounded / max(steps, 1),
                "penetration_cm": physical["penetration_cm"] / frames,
                "limits": physical["limits"] / frames}

    def sample_metrics(self, ids: Tensor, cond: Condition | None) -> dict[str, float]:
        """`ddm sample`: the judge's and the physical view of samples drawn for `cond.classes`."""
        return self.quality(self.decode(ids), cond.classes)

    def evaluate_model(self, model) -> dict[str, float]:
        t, cfg, run_dir = self.config.task, self.config, self.run_dir
        classifier, _, (held_crops, held_labels) = self.judge()
        c = cfg.model.num_classes
        classes = torch.arange(t.samples_per_class * c) % c
        rows: dict[str, dict[str, float]] = {}
        held_parts = [p_features(p) for p in self.splits.heldout]
        held_labels_parts = torch.arange(len(held_parts))
        real = self.quality(held_parts, held_labels_parts)
        crop_pred, _, _ = classifier.judge(held_crops, t.classifier_window)
        real["accuracy"] = float((crop_pred == held_labels).float().mean())  # the judge on every held-out crop
        rows["real held-out motion"] = {**real, "nfe": 0.0}
        rows["tokenizer reconstructions, held-out"] = {**self.quality([self.reconstruct(p) for p in held_parts],
                                                                     held_labels_parts), "nfe": 0.0}
        # The reference for samples: real training windows, as many per label as samples (their Fréchet
        # proxy is to their own split, so only their physical figures are a target), and the tokenizer's
        # reconstructions of them (what a sample that copied them would look like: the ceiling).
        g = torch.Generator().manual_seed(cfg.sample.seed)
        picks = torch.cat([torch.nonzero(self.train_y == k)[:, 0][torch.randint(int((self.train_y == k).sum()),
                                                                               (t.samples_per_class,), generator=g)]
                           for k in range(c)])
        real_train, real_labels = self.train_x[picks], self.train_y[picks]
        rows["real training windows"] = {**self.quality(real_train, real_labels), "nfe": 0.0}
        rows["tokenizer reconstructions, training"] = {**self.quality(self.decode(self.ids["train"][picks]),
                                                                      real_labels), "nfe": 0.0}
        elbo = {"diffusion": self.heldout_elbo_of(model, self.eval_dataset())}

        samples, names = {}, self.names
        strength = cfg.diffusion.priority_strength
        main = f"priority {strength:g}" if strength > 0 else "uniform masking"
        for steps in t.eval_steps:
            x, result, seconds = self.generate_motion(model, classes, steps=steps, seed=cfg.sample.seed)
            rows[f"{main}, {steps} steps"] = {**self.quality(x, classes), "nfe": float(result.nfe),
                                              "ms_per_motion": 1000 * seconds / len(classes)}
            samples[steps] = x
        if t.ablation and strength > 0:
            uniform = self.uniform_model()
            elbo["uniform"] = self.heldout_elbo_of(uniform, self.eval_dataset())
            for steps in t.eval_steps:
                x, result, seconds = self.generate_motion(uniform, classes, steps=steps, seed=cfg.sample.seed)
                rows[f"uniform masking, {steps} steps"] = {**self.quality(x, classes), "nfe": float(result.nfe),
                                                           "ms_per_motion": 1000 * seconds / len(classes)}
        if t.baseline:
            baseline = self.baseline_model()
            start = time.perf_counter()  # DiffusionTask.baseline_model: a causal copy, trained once
            ids, nfe = self.baseline_sample(baseline, len(classes), cond=Condition(classes=classes),
                                            seed=cfg.sample.seed)
            x, seconds = self.decode(ids), time.perf_counter() - start
            rows["autoregressive"] = {**self.quality(x, classes), "nfe": float(nfe),
                                      "ms_per_motion": 1000 * seconds / len(classes)}
            samples["autoregressive"] = x
        texts = {}
        if t.text:
            text = self.text_model()
            steps = t.eval_steps[-1]
            for kind, table in (("training sentences", SENTENCES), ("unseen paraphrases", PARAPHRASES)):
                x, result, seconds = self.generate_from_text(text, [table[names[int(k)]] for k in classes],
                                                             steps=steps, seed=cfg.sample.seed)
                rows[f"text, {kind}, {steps} steps"] = {**self.quality(x, classes), "nfe": float(result.nfe),
                                                        "ms_per_motion": 1000 * seconds / len(classes)}
                texts[kind] = x

        inbetween, paths = self.evaluate_inbetween(model), []
        last = samples[t.eval_steps[-1]]
        first = torch.stack([torch.nonzero(classes == k)[0, 0] for k in range(c)])[:t.gif_motions]
        paths.append(pictures.motion_gif(last[first], [names[int(k)] for k in classes[first]], run_dir / "samples.gif",
                                         self.fps))
        if "autoregressive" in samples:
            paths.append(pictures.motion_gif(samples["autoregressive"][first], [names[int(k)] for k in classes[first]],
                                             run_dir / "samples_autoregressive.gif", self.fps))
        if texts:
            paths.append(pictures.motion_gif(texts["unseen paraphrases"][first],
                                             [PARAPHRASES[names[int(k)]][:28] for k in classes[first]],
                                             run_dir / "samples_text_paraphrases.gif", self.fps))
        if inbetween.get("gif") is not None:
            paths.append(inbetween.pop("gif"))

        metrics = {f"{name}/{k}": v for name, row in rows.items() for k, v in row.items()}
        metrics.update({f"inbetween/{k}": v for k, v in inbetween.items() if isinstance(v, float)})
        metrics.update({f"heldout_elbo_bits_per_token/{k}": v for k, v in elbo.items() if v is not None})
        metrics["classifier/heldout_accuracy"] = real["accuracy"]
        print(self.report(rows, inbetween, elbo, len(held_crops)))
        for p in paths:
            print(f"picture: {p}")
        return metrics

    def evaluate_inbetween(self, model) -> dict:
        """In-betweening of the held-out windows: the model against linear interpolation of the features."""
        t = self.config.task
        if not len(self.heldout_x):
            return {}
        x, y = self.heldout_x, self.heldout_y
        decoded, hidden, seconds = self._fill(model, x, y, None, None, self.config.sample.seed)
        filled = _keep_given(decoded, x, hidden, blend=True)
        lerp = _interpolate(x, t.inbetween_keep)
        truth, _ = body_points(x)
        out = {"windows": float(len(x)), "clips": float(len(y.unique())), "ms_per_motion": 1000 * seconds / len(x)}
        rebuilt = self.decode(self.encode(x))  # the tokenizer's own reconstruction: the bound of the fill
        for name, motion in (("diffusion", filled), ("unblended", _keep_given(decoded, x, hidden, blend=False)),
                             ("tokenizer", _keep_given(rebuilt, x, hidden, blend=True)),
                             ("tokenizer_unblended", _keep_given(rebuilt, x, hidden, blend=False)),
                             ("linear", lerp)):
            pos, _ = body_points(motion)
            err = (pos - truth).norm(dim=-1).mean(-1)  # [B, T] mean joint error, m
            q = self.quality(motion, y)
            out.update({f"{name}_joint_error_cm": float(err[hidden].mean() * 100),
                        f"{name}_accuracy": q["accuracy"], f"{name}_skating_cm_s": q["skating_cm_s"],
                        f"{name}_seam_cm": _seam(pos, t.inbetween_keep, t.frames)})
        out["real_seam_cm"] = _seam(truth, t.inbetween_keep, t.frames)
        out["real_skating_cm_s"] = self.quality(x, y)["skating_cm_s"]
        # The same on as many training windows (spread over the split): can the model in-between motion it
        # was trained on, where the held-out ends (other phases of each clip) may lie outside its data?
        seen = torch.linspace(0, len(self.train_x) - 1, len(x)).round().long()
        filled_seen, hidden_seen, _ = self.inbetween(model, self.train_x[seen], self.train_y[seen],
                                                     seed=self.config.sample.seed)  # blended
        pos_seen, _ = body_points(filled_seen)
        truth_seen, _ = body_points(self.train_x[seen])
        lerp_seen, _ = body_points(_interpolate(self.train_x[seen], t.inbetween_keep))
        for name, pos in (("train_diffusion", pos_seen), ("train_linear", lerp_seen)):
            err = (pos - truth_seen).norm(dim=-1).mean(-1)
            out[f"{name}_joint_error_cm"] = float(err[hidden_seen].mean() * 100)
        n = min(6, len(x))
        pick = torch.linspace(0, len(x) - 1, n).round().long()
        both = torch.stack([x[pick], filled[pick]], 1).flatten(0, 1)
        titles = [f"{self.names[int(y[i])]} {k}" for i in pick for k in ("real", "in-between")]
        marks = torch.stack([torch.zeros_like(hidden[pick]), hidden[pick]], 1).flatten(0, 1)  # generated: red
        out["gif"] = pictures.motion_gif(both, titles, self.run_dir / "inbetween.gif", self.fps, cols=4,
                                         highlight=marks)
        return out

    def report(self, rows: dict, inbetween: dict, elbo: dict, held_crops: int) -> str:
        t, s, d = self.config.task, self.config.sample, self.config.diffusion
        lines = [f"motion task: {len(self.names)} DeepMimic clips as action labels, {t.frames}-frame windows "
                 f"({t.frames / self.fps:.2f} s at {self.fps:g} fps) = {self.config.model.seq_len} tokens "
                 f"({t.frames // self.downsample} steps x {self.groups} groups, {self.codes} codes); importance "
                 f"{t.importance}, priority_strength {d.priority_strength:g}; sampler {s.order} order, guidance "
                 f"{s.guidance_scale}, temperature {s.temperature}; {t.samples_per_class} motions per label",
                 f"  judge: {t.classifier_window}-frame crops every {t.classifier_stride} frames; held-out accuracy on "
                 f"{held_crops} real held-out crops. Fréchet proxy: judge features against the training crops of the "
                 "same labels, class-balanced. Its real-vs-real floor is the real held-out row (held-out parts are "
                 "each clip's last 20%: other phases of the motion than any training window, so samples that stay "
                 "near training windows can score below it); the real training windows row resamples the "
                 "reference's own split. Skating: horizontal "
                 f"foot speed while the foot centre is below {100 * t.contact_height:.0f} cm; penetration: depth of "
                 "the lowest body point below the floor; limits: frames with a joint over "
                 f"{t.limit_tolerance_deg:g} deg outside the training range",
                 f"  {'':<38} {'accuracy':>8} {'Fréchet':>8} {'divers.':>8} {'skate cm/s':>10} {'contact':>8} "
                 f"{'pen. cm':>8} {'limits':>7} {'NFE':>5} {'ms/motion':>9}"]
        for name, r in rows.items():
            timing = f"{r['ms_per_motion']:>9.2f}" if "ms_per_motion" in r else f"{'-':>9}"
            lines.append(f"  {name:<38} {r['accuracy']:>8.3f} {r['frechet']:>8.2f} {r['diversity']:>8.2f} "
                         f"{r['skating_cm_s']:>10.2f} {r['contact']:>8.3f} {r['penetration_cm']:>8.2f} "
                         f"{r['limits']:>7.3f} {r['nfe']:>5.0f} {timing}")
        if any(v is not None for v in elbo.values()):
            lines.append("  held-out ELBO (bits/token, held-out windows, each model's own process): " + ", ".join(
                f"{k} {v:.3f}" for k, v in elbo.items() if v is not None))
        if not inbetween:
            lines.append(f"  in-betweening: not measured, no held-out part is {t.frames} frames long")
        else:
            i = inbetween
            lines.append(f"  in-betweening ({int(i['windows'])} held-out windows of {int(i['clips'])} clips, "
                         f"{t.inbetween_keep} frames kept at each end, the label given; 'seams blended': moved by "
                         "the decoder's error on the kept frames beside them)")
            lines.append(f"    {'':<44} {'joint err cm':>12} {'seam jump cm':>12} {'accuracy':>8} {'skate cm/s':>10}")
            for key, name in (("diffusion", "diffusion, seams blended"), ("unblended", "diffusion, as decoded"),
                              ("tokenizer", "tokenizer reconstruction, seams blended"),
                              ("tokenizer_unblended", "tokenizer reconstruction, as decoded"),
                              ("linear", "linear interpolation of the kept frames")):
                lines.append(f"    {name:<44} {i[f'{key}_joint_error_cm']:>12.1f} {i[f'{key}_seam_cm']:>12.1f} "
                             f"{i[f'{key}_accuracy']:>8.3f} {i[f'{key}_skating_cm_s']:>10.1f}")
            lines.append(f"    {'real motion':<44} {'-':>12} {i['real_seam_cm']:>12.1f} {'-':>8} "
                         f"{i['real_skating_cm_s']:>10.1f}")
            lines.append(f"    on {int(i['windows'])} training windows: joint error "
                         f"{i['train_diffusion_joint_error_cm']:.1f} cm, seams blended (linear "
                         f"{i['train_linear_joint_error_cm']:.1f})")
        return "\n".join(lines)


def p_features(part) -> Tensor:
    """A pose sequence as features [T, 65] (its own heading)."""
    return pose_to_features(part).float()


def _balanced(feats: Tensor, labels: Tensor, per_class: int = 200, seed: int = 0) -> Tensor:
    """`per_class` rows of each label drawn with replacement: every label weighs alike in the Fréchet proxy."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for k in labels.unique():
        rows = torch.nonzero(labels == k)[:, 0]
        out.append(feats[rows[torch.randint(len(rows), (per_class,), generator=g)]])
    return torch.cat(out)


def _keep_given(decoded: Tensor, x: Tensor, hidden: Tensor, blend: bool) -> Tensor:
    """The kept frames as given, the hidden ones decoded: moved by the decoder's error on the kept frames
    beside them (`blend`, `inbetween.blend_seams`), or as decoded."""
    return blend_seams(decoded, x, hidden) if blend else torch.where(hidden[..., None], decoded, x)


def _interpolate(x: Tensor, keep: int) -> Tensor:
    """The in-betweening baseline: features interpolated linearly from the last kept frame at the start
    to the first kept frame at the end (rotations through their 6-D form)."""
    t = x.shape[1]
    a, b = x[:, keep - 1], x[:, t - keep]
    out = x.clone()
    for f in range(keep, t - keep):
        w = (f - keep + 1) / (t - 2 * keep + 1)
        out[:, f] = (1 - w) * a + w * b
    return out


def _seam(pos: Tensor, keep: int, frames: int) -> float:
    """The mean over motions of the larger frame-to-frame joint displacement (cm) at the two seams."""
    step = (pos[:, 1:] - pos[:, :-1]).norm(dim=-1).mean(-1)  # [B, T-1] mean joint displacement
    seams = step[:, [keep - 1, frames - keep - 1]]
    return float(seams.amax(1).mean() * 100)


__all__ = ["MotionTask", "MotionConfig"]
