"""One config system: typed dataclasses, loaded from YAML, with dotted overrides.

    cfg = from_dict(SampleConfig, {"order": "confidence", "steps": 8}, "sample")
    experiment = ddm.experiment.load_experiment("configs/tasks/synthetic_cpu.yaml", ["model.depth=6"])

Every field is checked against its annotation when the config is built: an
unknown key, a wrong type or a value outside the allowed set or range fails at
load time with a `ConfigError` that names the dotted field and what is allowed.
Ranges live in the field's metadata: `field(default=1, metadata={"min": 1})`.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml


class ConfigError(ValueError):
    """A config field is unknown, of the wrong type, or out of range."""


def _range(lo: float | None = None, hi: float | None = None, **extra: Any) -> dict:
    meta = dict(extra)
    if lo is not None:
        meta["min"] = lo
    if hi is not None:
        meta["max"] = hi
    return meta


def positive(default: Any) -> Any:
    """A field that must be >= 1 (counts) or > 0 (floats)."""
    if isinstance(default, float):
        return field(default=default, metadata={"gt": 0.0})
    return field(default=default, metadata={"min": 1})


def bounded(default: Any, lo: float | None = None, hi: float | None = None) -> Any:
    return field(default=default, metadata=_range(lo, hi))


def registered(registry: str, default: Any) -> Any:
    """A field whose value (or each value of a list) names an entry of a `ddm.registry.Registry`,
    given by import path (`"ddm.sampling.orders:ORDERS"`) so that configs import no parts."""
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"registry": registry})
    return field(default=default, metadata={"registry": registry})


def _registry(f: dataclasses.Field):
    from .registry import import_object

    return import_object(f.metadata["registry"])


def _check_registered(f: dataclasses.Field, value: Any, where: str) -> None:
    from .registry import RegistryError

    registry = _registry(f)
    for i, name in enumerate(value if isinstance(value, list) else [value]):
        try:
            registry.get(name, f"{where}[{i}]" if isinstance(value, list) else where)
        except RegistryError as e:
            raise ConfigError(str(e)) from None


# --------------------------------------------------------------------------- core configs


@dataclass
class ModelConfig:
    """The denoiser: a bidirectional transformer over a token grid of `shape`."""

    vocab_size: int = positive(16)  # target vocabulary; the mask id is `vocab_size`
    shape: list[int] = field(default_factory=lambda: [32])  # token grid, e.g. [H, W] or [T, J]
    d_model: int = positive(256)
    depth: int = positive(6)
    heads: int = positive(4)
    mlp_ratio: float = positive(4.0)
    dropout: float = bounded(0.0, 0.0, 0.9)
    positions: Literal["rotary", "axial"] = "rotary"  # 1-D rotary over the flat index, or per-axis
    # A learned vector per target position added to its token embedding. Rotary attention
    # only sees offsets, so with every token masked (the first sampling step) a model without a
    # condition prefix to anchor on cannot tell the first position from the middle ones.
    learned_positions: bool = False
    # Entities of each target position (one row of ids per position, all rows one length; [] = off):
    # a learned vector per entity is added to the embedding of every position that belongs to it.
    # A graph's pair token (i, j) gets node i's and node j's, so tokens that share a node see it in
    # their embeddings, which a free vector per position has to learn pair by pair. Set by the task
    # that knows its layout (the graph task's `task.node_positions`).
    position_entities: list[list[int]] = field(default_factory=list)
    time_conditioning: bool = False
    # Causal attention over the target (the autoregressive baseline, `ddm.autoregressive`):
    # token i sees the condition and targets < i only.
    causal: bool = False
    cond_vocab_size: int = bounded(0, 0)  # prefix condition tokens (0: none)
    cond_len: int = bounded(0, 0)  # longest condition prefix of tokens
    num_classes: int = bounded(0, 0)  # class conditioning (0: none); null class = num_classes
    cond_embed_dim: int = bounded(0, 0)  # external embedding vectors projected into the prefix
    continuous_dim: int = bounded(0, 0)  # continuous head (0: none)
    # The MLP's activation (body=ddm): GELU with the tanh approximation, or the exact (erf) GELU,
    # about twice as fast on CPU (forward + backward). A trained model keeps the one it was trained with.
    activation: Literal["gelu_tanh", "gelu"] = "gelu_tanh"
    body: Literal["ddm", "hf"] = "ddm"  # our transformer, or a `transformers` encoder
    hf_config: dict = field(default_factory=dict)  # transformers config fields (body=hf)
    hf_path: str = ""  # or a local folder holding a transformers encoder (body=hf)

    def __post_init__(self) -> None:
        if not self.shape or any(not isinstance(s, int) or s < 1 for s in self.shape):
            raise ConfigError(f"model.shape: expected a list of positive ints, got {self.shape}")
        if self.d_model % self.heads:
            raise ConfigError(f"model.d_model: {self.d_model} is not divisible by model.heads={self.heads}")
        head_dim = self.d_model // self.heads
        axes = len(self.shape) if self.positions == "axial" else 1
        if head_dim % (2 * axes):
            raise ConfigError(
                f"model.d_model: head size {head_dim} must be divisible by 2 x {axes} "
                f"(rotary pairs per axis) for positions={self.positions!r}")
        if self.cond_vocab_size and not self.cond_len:
            raise ConfigError("model.cond_len: must be >= 1 when model.cond_vocab_size is set")
        if self.activation != "gelu_tanh" and self.body != "ddm":
            raise ConfigError("model.activation: body=hf brings its own activation (set it in model.hf_config)")
        if self.learned_positions and self.body != "ddm":
            raise ConfigError("model.learned_positions: body=hf brings its own position embeddings")
        if self.position_entities:
            self._check_position_entities()
        if self.causal and (self.body != "ddm" or self.time_conditioning):
            raise ConfigError("model.causal: the autoregressive baseline needs body=ddm and no time_conditioning")

    def _check_position_entities(self) -> None:
        rows = self.position_entities
        if self.body != "ddm":
            raise ConfigError("model.position_entities: body=hf brings its own position embeddings")
        if len(rows) != self.seq_len:
            raise ConfigError(f"model.position_entities: {len(rows)} rows for {self.seq_len} target positions")
        for i, row in enumerate(rows):
            if not isinstance(row, list) or len(row) != len(rows[0]) or not row:
                raise ConfigError(f"model.position_entities[{i}]: expected a list of {len(rows[0]) or 'some'} "
                                  f"entity ids like the first row, got {row!r}")
            if any(not isinstance(e, int) or isinstance(e, bool) or e < 0 for e in row):
                raise ConfigError(f"model.position_entities[{i}]: entity ids are ints >= 0, got {row}")

    @property
    def seq_len(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n

    @property
    def mask_id(self) -> int:
        return self.vocab_size


@dataclass
class DiffusionConfig:
    """The forward (masking) process and the training objective."""

    schedule: str = registered("ddm.schedules:SCHEDULES", "loglinear")  # linear, cosine, loglinear, polynomial
    power: float = positive(2.0)  # exponent of the polynomial schedule
    weighting: Literal["elbo", "flat"] = "elbo"  # MDLM's ELBO weight, or MaskGIT's flat CE
    antithetic: bool = True  # low-discrepancy time sampling
    priority_strength: float = bounded(0.0, 0.0)  # per-token importance masking (0: off)
    cond_dropout: float = bounded(0.0, 0.0, 1.0)  # drop the condition (classifier-free guidance)
    # Replace this fraction of the visible tokens by uniform random ones and also train the
    # prediction at every visible position (weight `visible_weight`): the model learns which
    # visible tokens to doubt, which secondary remasking (recheck) reads. 0: masked positions only.
    visible_noise: float = bounded(0.0, 0.0, 1.0)
    visible_weight: float = bounded(1.0, 0.0)
    # The continuous head (model.continuous_dim): "flow" trains the joint process of `ddm.continuous`
    # (noisy vectors in, flow velocity out; the sampler carries the vectors step to step);
    # "regression" predicts the clean vectors from the ids alone (no vectors in).
    continuous_loss: Literal["flow", "regression"] = "flow"
    continuous_weight: float = bounded(1.0, 0.0)
    # where a regression head is trained: every position, or only where the true token is shown (a head
    # read once the ids are chosen, e.g. the value inside an action bin)
    continuous_where: Literal["all", "visible"] = "all"
    continuous_schedule: str = ""  # the vectors' signal level a(t) ("": the tokens' `schedule`)
    # "coupled": the vectors are noised at the tokens' time t; "independent": at their own uniform time,
    # given to the model as t (needs model.time_conditioning), so the sampler can finish the ids one call
    # before the vectors and spend its last call on the vectors given every id (`ddm.continuous`);
    # "trailing": their own time, drawn between the tokens' time and 1 (never cleaner than the ids)
    continuous_time: Literal["coupled", "independent", "trailing"] = "coupled"

    def __post_init__(self) -> None:
        from .schedules import SCHEDULES

        if self.continuous_schedule and self.continuous_schedule not in SCHEDULES:
            raise ConfigError(f"diffusion.continuous_schedule: unknown schedule {self.continuous_schedule!r}; "
                              f"expected one of {SCHEDULES.names()} (or empty: the tokens' schedule)")


@dataclass
class TrainConfig:
    steps: int = positive(1000)
    batch_size: int = positive(64)  # per process and micro-batch
    grad_accum: int = positive(1)
    lr: float = positive(3e-4)
    min_lr_ratio: float = bounded(0.1, 0.0, 1.0)  # cosine decays to lr * min_lr_ratio
    warmup_steps: int = bounded(100, 0)
    weight_decay: float = bounded(0.01, 0.0)
    betas: list[float] = field(default_factory=lambda: [0.9, 0.99])
    grad_clip: float = bounded(1.0, 0.0)  # 0: no clipping
    mixed_precision: Literal["no", "bf16"] = "no"
    ema_decay: float = bounded(0.0, 0.0, 1.0)  # 0: no EMA
    log_every: int = positive(50)
    eval_every: int = bounded(0, 0)  # 0: no periodic evaluation
    checkpoint_every: int = bounded(500, 0)  # 0: only at the end
    keep_checkpoints: int = positive(2)
    seed: int = 0
    progress: bool = True
    # Speed switches (measured by benchmarks/train_throughput.py and, channels_last,
    # benchmarks/conv_channels_last.py). They change no model, only the rounding of the updates.
    # torch.compile the model for training (the first step compiles: tens of seconds on CPU).
    compile: bool = False
    # The denoiser's discrete head only at the positions that carry loss (the masked ones, and the
    # visible ones with diffusion.visible_noise), not at every position; off when logits
    # processors constrain training (they read every position's logits).
    sparse_head: bool = False
    fused_optimizer: bool = False  # AdamW's fused kernel (one pass over the parameters)
    # Convolution weights (and so activations) in channels-last order while training (the conv
    # tokenizers; no effect on a transformer); the trained model is saved in the default order.
    channels_last: bool = False

    def __post_init__(self) -> None:
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ConfigError(f"train.betas: expected two numbers in [0, 1), got {self.betas}")


@dataclass
class SampleConfig:
    """Decoding; `ddm.sampling` documents each part (`Sampler.from_config` reads this)."""

    steps: int = positive(64)  # step budget per sample (split over blocks); see `count` for clamping
    order: str = registered("ddm.sampling.orders:ORDERS", "random")  # which masked tokens go first
    temperature: float = bounded(1.0, 0.0)  # 0: greedy tokens
    # each step's log-probabilities moved by mixing x (their change since the step before): > 0 goes
    # further along it (guidance by the tokens revealed since), -1 < mixing < 0 back toward the earlier one
    mixing: float = bounded(0.0, -1.0)
    num_samples: int = positive(1000)
    batch_size: int = positive(250)
    seed: int = 0
    # how many tokens per step: a deterministic count from `count_schedule`, MDLM's binomial
    # (each masked token revealed with probability (alpha_s - alpha_t) / (1 - alpha_t)), or
    # every token whose probability exceeds `threshold` (at least enough to finish in `steps`)
    count: str = registered("ddm.sampling.schedules:COUNTS", "schedule")
    count_schedule: str = registered("ddm.sampling.schedules:STEP_SCHEDULES", "linear")  # revealed fraction per step
    times: list[float] = field(default_factory=list)  # count_schedule=times: model times 1 -> 0 (a learned schedule)
    threshold: float = bounded(0.9, 0.0, 1.0)
    top_k: int = bounded(0, 0)  # 0: off
    top_p: float = bounded(1.0, 0.0, 1.0)  # 1: off; must be > 0
    gumbel_temperature: float = bounded(0.0, 0.0)  # MaskGIT: Gumbel noise on the order scores, annealed to 0
    remasking: str = registered("ddm.sampling.remasking:REMASKING", "none")
    remask_threshold: float = bounded(0.1, 0.0, 1.0)  # recheck: remask if the current probability < this
    remask_drop: float = bounded(1.0, 0.0, 1.0)  # recheck: remask if it fell by more than this (1: off)
    remask_eta: float = bounded(0.05, 0.0, 1.0)  # ReMDM cap / rescale: eta
    remask_window: list[float] = field(default_factory=lambda: [0.0, 1.0])  # progress range with remasking
    guidance_scale: float = bounded(0.0, 0.0)  # classifier-free guidance w (0: conditional sampler)
    # the scale over a block's steps: constant, or linear from 0 at the first step to 2x guidance_scale at
    # the last (the same mean; Muse's increasing guidance). A step at scale 0 runs the conditional rows alone
    guidance_schedule: Literal["constant", "linear"] = "constant"
    block_size: int = bounded(0, 0)  # semi-autoregressive blocks of this many tokens (0: one block)
    cache_prefix: bool = True  # encode the condition prefix once per sample
    reuse_predictions: bool = True  # no model call when the tokens did not change since the last one (per row: finished rows leave the call)
    # approximate: a call runs only the masked tokens and those changed since they last ran; the others are
    # attended to through their last keys/values (dKV-cache / Fast-dLLM); cache_refresh > 0 runs every token
    # every that many calls (0: only the first)
    cache_targets: bool = False
    cache_refresh: int = bounded(0, 0)
    # approximate: between refreshes, these transformer blocks are not run; each adds the change it made to
    # its input at the last call that ran it (Delta-DiT / Learning-to-Cache); every block runs every
    # skip_refresh calls (1: every call, exact). [] : off
    skip_blocks: list[int] = field(default_factory=list)
    skip_refresh: int = bounded(2, 1)
    learned: bool = False  # use the coefficients `ddm distill` learned for this model, these parts and `steps`
    continuous_noise: float = bounded(0.0, 0.0, 1.0)  # joint models: share of the vectors' noise redrawn per step
    # int8: the loaded denoiser's transformer-block weights in int8 (CPU only; `ddm.quantize`), applied
    # where a task loads a trained model to sample or evaluate it
    quantize: Literal["none", "int8"] = "none"

    def __post_init__(self) -> None:
        if not self.top_p > 0.0:
            raise ConfigError(f"sample.top_p: {self.top_p!r} is out of range; expected > 0")
        if self.count_schedule == "times":
            t = self.times
            if len(t) < 2 or t[0] != 1.0 or t[-1] != 0.0 or any(a <= b for a, b in zip(t, t[1:])):
                raise ConfigError(f"sample.times: expected strictly decreasing times from 1.0 to 0.0 "
                                  f"(count_schedule=times), got {t}")
        w = self.remask_window
        if len(w) != 2 or not 0.0 <= w[0] < w[1] <= 1.0:
            raise ConfigError(f"sample.remask_window: expected [start, stop] with 0 <= start < stop <= 1, got {w}")


# --------------------------------------------------------------------------- loading


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (list, tuple):
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    return getattr(tp, "__name__", str(tp))


def convert(tp: Any, value: Any, where: str) -> Any:
    """Check `value` against the annotation `tp`, converting int -> float and dict -> dataclass."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"{where}: {value!r} is not allowed; expected {_type_name(tp)}")
        return value
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(tp):
            if option is type(None) and value is None:
                return None
            try:
                return convert(option, value, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
        (item,) = typing.get_args(tp)[:1]
        return [convert(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if tp is float:
        if isinstance(value, str):
            # YAML 1.1 reads `3e-3` (no dot) as a string; accept it as the number it spells.
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise TypeError(f"{where}: unsupported annotation {tp!r}")


def _check_range(f: dataclasses.Field, value: Any, where: str) -> None:
    meta = f.metadata
    if "min" in meta and value < meta["min"]:
        raise ConfigError(f"{where}: {value!r} is out of range; expected >= {meta['min']}")
    if "max" in meta and value > meta["max"]:
        raise ConfigError(f"{where}: {value!r} is out of range; expected <= {meta['max']}")
    if "gt" in meta and not value > meta["gt"]:
        raise ConfigError(f"{where}: {value!r} is out of range; expected > {meta['gt']}")


def check_ranges(obj: Any, where: str) -> None:
    """The range of every numeric field of a dataclass built in code (`from_dict` checks those read
    from a file), with the same errors: TrainConfig(log_every=0) is refused by name, not by a
    division by zero later."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            _check_range(f, value, f"{where}.{f.name}")


def from_dict(cls: type, data: Any, where: str = "") -> Any:
    """Build dataclass `cls` from a mapping, checking every key, type and range."""
    prefix = f"{where}." if where else ""
    if isinstance(data, cls):
        return data
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"{prefix}{unknown[0]}: unknown config key; allowed keys in "
            f"{where or 'the top level'}: {', '.join(sorted(fields))}")
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = convert(hints[name], value, prefix + name)
        if isinstance(kwargs[name], (int, float)) and not isinstance(kwargs[name], bool):
            _check_range(fields[name], kwargs[name], prefix + name)
        if "registry" in fields[name].metadata:
            _check_registered(fields[name], kwargs[name], prefix + name)
    try:
        return cls(**kwargs)
    except ConfigError as e:
        if where and not str(e).startswith(where):
            raise ConfigError(f"{where}.{e}") from None
        raise


def to_dict(cfg: Any) -> Any:
    """The plain-data form of a config (for YAML / JSON)."""
    if dataclasses.is_dataclass(cfg):
        return {f.name: to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, (list, tuple)):
        return [to_dict(v) for v in cfg]
    if isinstance(cfg, dict):
        return {k: to_dict(v) for k, v in cfg.items()}
    return cfg


def brief(value: Any, limit: int = 80) -> str:
    """repr(value), cut after `limit` characters: an error message names a long list without
    printing all of it."""
    text = repr(value)
    if len(text) <= limit:
        return text
    size = f", {len(value)} items" if isinstance(value, (list, tuple, dict)) else ""
    return f"{text[:limit]}...{size}"


def changed_fields(old: Any, new: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """(dotted field, old value, new value) for every field that differs between two configs
    (dataclasses or plain mappings, nested); a field missing on one side is None there."""
    out: list[tuple[str, Any, Any]] = []

    def walk(x: Any, y: Any, where: str) -> None:
        if isinstance(x, dict) and isinstance(y, dict):
            for k in sorted(set(x) | set(y)):
                walk(x.get(k), y.get(k), f"{where}.{k}" if where else k)
        elif x != y:
            out.append((where, x, y))

    walk(to_dict(old), to_dict(new), prefix)
    return out


def describe(cls: type, section: str) -> str:
    """One line per field of config dataclass `cls`: name, what it accepts, default (for --help)."""
    hints = typing.get_type_hints(cls)
    lines = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        allowed = (f"one of {', '.join(_registry(f).names())}" if "registry" in f.metadata
                   else _type_name(hints[f.name]))
        lines.append(f"  {section}.{f.name}={default!r}  ({allowed})")
    return "\n".join(lines)


class _StrictLoader(yaml.SafeLoader):
    """YAML's safe loader, but a key given twice in one mapping is an error (YAML keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise ConfigError(f"line {key_node.start_mark.line + 1}: key {key!r} is given twice in one "
                                  f"mapping (first on line {seen[key]}); YAML would keep only the last")
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


def parse_yaml(text: str, where: str) -> Any:
    """YAML text -> data; malformed YAML and repeated keys are ConfigErrors naming `where`."""
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"{where}: not valid YAML: {getattr(e, 'problem', None) or e}{at}") from None


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply `a.b.c=value` strings to a nested mapping; values are parsed as YAML."""
    data = dict(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected the form key.sub=value")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(parts):
            raise ConfigError(f"override {item!r}: {key!r} is not a dotted field name")
        node = data
        for p in parts[:-1]:
            child = node.get(p)
            if child is None:
                child = {}
            elif not isinstance(child, dict):
                raise ConfigError(f"{key}: {p!r} is not a section")
            node[p] = child = dict(child)
            node = child
        node[parts[-1]] = parse_yaml(raw, f"override {item!r}")
    return data


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path}: {'a folder, not a file' if path.is_dir() else 'no such file'}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"config file {path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    data = parse_yaml(text, f"config file {path}") or {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: expected a mapping at the top level")
    return data
