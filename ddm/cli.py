"""The `ddm` command.

    ddm train  --config configs/synthetic_cpu.yaml [key.sub=value ...]
    ddm sample --config configs/synthetic_cpu.yaml sample.order=confidence sample.steps=8
    ddm eval   --config configs/synthetic_cpu.yaml
    ddm run    --config configs/synthetic_cpu.yaml      # train, then eval (the main job)

Every verb reads one experiment YAML (see `ddm.task`) and applies the dotted
overrides after it. Results go under the config's `run_dir`. Other packages add verbs
(e.g. `ddm tokenizer`, `ddm vla`) through the `ddm.commands` entry-point group: a
function `register(subparsers)`; the core never imports them.
"""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import entry_points
from pathlib import Path

import torch
import yaml

from .config import ConfigError, SampleConfig, TrainConfig, describe
from .io import atomic_write_text
from .task import ExperimentConfig, Task, build_task, experiment_dict, load_experiment

MODEL_DIR = "model"


def _load(args) -> tuple[ExperimentConfig, Task]:
    cfg = load_experiment(args.config, args.overrides)
    task = build_task(cfg)
    Path(cfg.run_dir).mkdir(parents=True, exist_ok=True)
    task.prepare(Path(cfg.run_dir))
    return cfg, task


def _model_dir(cfg: ExperimentConfig, args) -> Path:
    return Path(args.model) if getattr(args, "model", None) else Path(cfg.run_dir) / MODEL_DIR


def _load_model(cfg: ExperimentConfig, args):
    from .hub import load_pretrained

    directory = _model_dir(cfg, args)
    if not directory.exists():
        raise SystemExit(f"error: no trained model at {directory}; run `ddm train --config {args.config}` "
                         f"first or pass --model DIR")
    return load_pretrained(directory, expected_config=cfg.model)


def cmd_train(args) -> int:
    from .training import Trainer

    cfg, task = _load(args)
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(experiment_dict(cfg), sort_keys=False))
    torch.manual_seed(cfg.train.seed)  # the initial weights, like everything else, follow the seed
    model = task.build_model()
    # Recorded so that samplers can refuse guidance for a model never trained without its condition.
    model.trained_cond_dropout = cfg.diffusion.cond_dropout
    print(f"task {task.name}: {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters, "
          f"run dir {run_dir}")
    trainer = Trainer(model, task.loss_fn(), task.train_dataset(), cfg.train, run_dir,
                      eval_fn=task.eval_during_training if cfg.train.eval_every else None,
                      tokens_per_example=task.tokens_per_example())
    result = trainer.train()
    if result.interrupted:
        print(f"interrupted at step {result.step}; checkpoint saved. Run the same command again to resume.")
        return 130
    if not trainer.is_main:  # under `accelerate launch` one process writes the model
        return 0
    final = trainer.model
    if trainer.ema is not None:
        trainer.copy_ema_to(final)  # the EMA weights are the ones to sample from
    final.save_pretrained(run_dir / MODEL_DIR)
    print(f"trained {result.step} steps, final loss {result.loss:.4f}; model saved to {run_dir / MODEL_DIR}")
    return 0


def cmd_sample(args) -> int:
    cfg, task = _load(args)
    model = _load_model(cfg, args)
    metrics = task.sample(model, Path(cfg.run_dir))
    for k, v in metrics.items():
        print(f"{k}: {v:.4f}" if isinstance(v, float) else f"{k}: {v}")
    return 0


def cmd_eval(args) -> int:
    cfg, task = _load(args)
    model = _load_model(cfg, args)
    task.evaluate(model, Path(cfg.run_dir))
    return 0


def cmd_run(args) -> int:
    code = cmd_train(args)
    if code:
        return code
    return cmd_eval(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ddm", description="Masked discrete diffusion: train, sample and evaluate token-stream models.",
        epilog="Overrides: any config field as section.field=value, e.g. model.depth=6 train.steps=200 "
               "sample.order=confidence. Values are read as YAML (numbers, true/false, [lists]).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def verb(name: str, fn, help_text: str, model_arg: bool = False, fields: str = ""):
        p = sub.add_parser(name, help=help_text, description=help_text, epilog=fields,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("--config", required=True, help="experiment YAML, e.g. configs/synthetic_cpu.yaml")
        if model_arg:
            p.add_argument("--model", help="pretrained folder to use instead of <run_dir>/model")
        p.add_argument("overrides", nargs="*", metavar="key.sub=value", help="config overrides")
        p.set_defaults(fn=fn)

    verb("train", cmd_train, "Train the task's model (resumes from the newest checkpoint in run_dir).",
         fields="train fields (defaults):\n" + describe(TrainConfig, "train"))
    verb("sample", cmd_sample, "Generate samples with the sampler named in the `sample` section.", True,
         fields="sampler fields (defaults), e.g. sample.order=confidence sample.steps=8:\n"
                + describe(SampleConfig, "sample"))
    verb("eval", cmd_eval, "Evaluate a trained model: likelihood, sample quality, speed.", True)
    verb("run", cmd_run, "The main job: train, then evaluate.")
    for ep in entry_points(group="ddm.commands"):
        ep.load()(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
