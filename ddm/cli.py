"""The `ddm` command: the same verbs for every kind of experiment.

    ddm check   --config C      load and check the experiment, run nothing
    ddm prepare --config C      build what training stands on (data, tokenizer, demonstrations)
    ddm train   --config C      train (resumes from the newest checkpoint in run_dir) and save
    ddm eval    --config C      the task's figures of the trained model
    ddm sample  --config C      generate and write samples   (or: ddm sample --model DIR, no YAML)
    ddm run     --config C      train, then eval (the main job)
    ddm distill --model DIR --steps K [--plus]   learn a K-step sampler, saved in the model folder
    ddm bench   --config C      decoding modes side by side: the task's quality beside ms, calls, memory
    ddm encode / decode --config C --input X --output Y      a tokenizer's inputs <-> ids
    ddm convert DIR --config C  bring a model folder of an older ddm to the current format

Every verb reads one experiment YAML (`ddm.experiment`) and applies the dotted overrides
after it; results go under the config's `run_dir`. A task (`ddm.task`) decides what each
verb does for its kind: denoiser tasks, tokenizer fitting, the robot policy.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .config import ConfigError, SampleConfig, TrainConfig, describe, to_dict
from .experiment import experiment_of_folder, load_experiment
from .registry import RegistryError
from .training import end_processes
from .task import Task, build_task


def _task(args) -> Task:
    if args.config:
        return build_task(load_experiment(args.config, args.overrides))
    if getattr(args, "model", None):  # `ddm sample --model DIR` alone: the folder's own experiment
        return build_task(experiment_of_folder(args.model, args.overrides))
    raise ConfigError("give --config (an experiment YAML) or --model (a trained model folder)")


def cmd_check(args) -> int:
    task = _task(args)  # every key, type, range, registered name and cross-section rule
    print(f"ok: a {task.config.task.name} experiment ({type(task.config).__name__}), run_dir {task.run_dir}")
    return 0


def cmd_prepare(args) -> int:
    _task(args).prepare()
    return 0


def cmd_train(args) -> int:
    task = _task(args)
    if args.force:
        task.start_over()
    try:
        task.train()
    except KeyboardInterrupt as e:
        print(f"{e or 'interrupted'}. Run the same command again to resume.", file=sys.stderr)
        return 130
    return 0


def cmd_eval(args) -> int:
    _task(args).evaluate(getattr(args, "model", None))  # `ddm run` has no --model: the run's own
    return 0


def cmd_sample(args) -> int:
    for k, v in _task(args).sample(args.model, args.out).items():
        print(f"{k}: {v:.4f}" if isinstance(v, float) else f"{k}: {v}")
    return 0


def cmd_distill(args) -> int:
    result = _task(args).distill(args.steps, args.plus, args.teacher_steps, args.model,
                                 iterations=args.iterations, batch_size=args.batch_size,
                                 teacher_order=args.teacher_order, forward_weight=args.forward_weight,
                                 learn_guidance=not args.fixed_guidance, learn_mixing=args.mixing)
    for k, v in result.items():
        print(f"{k}: {v:.4f}" if isinstance(v, float) else f"{k}: {v}")
    return 0


def cmd_bench(args) -> int:
    _task(args).bench(args.model, tuple(args.modes), args.batch, args.rounds, args.singles, args.train)
    return 0


def cmd_run(args) -> int:
    code = cmd_train(args)
    return code or cmd_eval(args)  # a finished run says so and goes on to evaluate


def cmd_encode(args) -> int:
    print(_task(args).encode_file(args.input, args.output, args.model))
    return 0


def cmd_decode(args) -> int:
    print(_task(args).decode_file(args.input, args.output, args.model))
    return 0


def cmd_convert(args) -> int:
    from .hub import config_diff, convert_folder, read_pretrained_config

    exp = load_experiment(args.config, args.overrides)
    if not hasattr(exp, "diffusion"):
        raise ConfigError(f"{args.config}: not a denoiser experiment; only denoiser folders need converting")
    saved = read_pretrained_config(Path(args.directory))["config"]
    diff = config_diff(to_dict(exp.model), saved)
    if diff:
        raise ConfigError(f"{args.directory}: trained with another model config than {args.config}: {'; '.join(diff)}")
    convert_folder(args.directory, {"diffusion": exp.diffusion, "sample": exp.sample, "task": to_dict(exp.task)})
    print(f"converted {args.directory}: it now records the diffusion process, sampler and task of {args.config}")
    return 0


def set_threads(threads: int | str | None) -> None:
    """Torch's intra-op threads for this process (None: leave torch's default)."""
    if threads is None:
        return
    try:
        n = int(threads)
    except ValueError:
        n = 0
    if n < 1:
        raise ConfigError(f"--threads / DDM_THREADS: {threads!r} is not a positive whole number")
    import torch

    torch.set_num_threads(n)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ddm", description="Masked discrete diffusion: the same verbs for every experiment (see ddm.cli).",
        epilog="Overrides: any config field as section.field=value, e.g. model.depth=6 train.steps=200 "
               "sample.order=confidence. Values are read as YAML (numbers, true/false, [lists]).")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error (or DDM_DEBUG=1)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads of this process (default: torch's, every core; or DDM_THREADS). "
                             "Two jobs on one machine: give each its share, e.g. 1 and 1 on 2 cores; "
                             "oversubscribed, they slow each other 3-6x")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def verb(name: str, fn, help_text: str, model: bool = False, config_required: bool = True,
             fields: str = "") -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text, epilog=fields,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("--config", required=config_required,
                       help="experiment YAML, e.g. configs/tasks/synthetic_cpu.yaml")
        if model:
            p.add_argument("--model", help="trained folder to use instead of the run's own")
        p.add_argument("overrides", nargs="*", metavar="key.sub=value", help="config overrides")
        p.set_defaults(fn=fn)
        return p

    verb("check", cmd_check, "Load and check an experiment (every field, name and rule) without running it.")
    verb("prepare", cmd_prepare, "Build what training stands on: data, tokenizer, demonstrations.")
    force_help = "start over: delete run_dir first (a run_dir of another experiment is refused otherwise)"
    train = verb("train", cmd_train, "Train and save (resumes from the newest checkpoint in run_dir).",
                 fields="train fields (defaults):\n" + describe(TrainConfig, "train"))
    train.add_argument("--force", action="store_true", help=force_help)
    verb("eval", cmd_eval, "Evaluate the trained model: likelihood, sample quality, speed.", model=True)
    sample = verb("sample", cmd_sample, "Generate and write samples; with --model alone, as the folder was trained.",
                  model=True, config_required=False,
                  fields="sampler fields (defaults), e.g. sample.order=confidence sample.steps=8:\n"
                         + describe(SampleConfig, "sample"))
    sample.add_argument("--out", help="where to write the samples (default: <run_dir>/samples)")
    distill = verb("distill", cmd_distill, "Learn a few-step sampler for a trained model (LSD; --plus: LSD+) and "
                   "save it in the model folder; sample with sample.learned=true.", model=True, config_required=False)
    distill.add_argument("--steps", type=int, required=True, help="the student's step budget K")
    distill.add_argument("--plus", action="store_true", help="LSD+: learn the reveal schedule too")
    distill.add_argument("--teacher-steps", type=int, default=128,
                         help="the teacher's steps (default 128, or one token per step if fewer)")
    distill.add_argument("--teacher-order", choices=["auto", "random", "student"], default="auto",
                         help="the teacher's order in the loss: random (a fixed teacher; the KL bound), student "
                              "(the student's own order, step by step), auto (random, student for a confidence "
                              "order); see ddm.distill")
    distill.add_argument("--forward-weight", type=float, default=0.0,
                         help="weight of the forward term, the student's likelihood of teacher samples (default 0: "
                              "the reverse bound alone; 1: Jeffreys); see ddm.distill")
    distill.add_argument("--fixed-guidance", action="store_true",
                         help="keep a guided sampler's constant guidance scale (default: learn one per step)")
    distill.add_argument("--mixing", action="store_true",
                         help="learn a mixing weight per step too (sample.mixing per step; see ddm.sampling.filters)")
    distill.add_argument("--iterations", type=int, default=200, help="SPSA iterations (default 200; stops at 8 min)")
    distill.add_argument("--batch-size", type=int, default=64, help="student samples per loss (default 64)")
    bench = verb("bench", cmd_bench, "Decoding modes of a trained model side by side in one run: the task's own "
                 "quality beside ms per sample (batch N and 1), calls, tokens per call and memory (ddm.bench).",
                 model=True)
    bench.add_argument("--modes", nargs="*", default=["plain", "cached", "approximate", "skip", "int8", "learned",
                                                       "autoregressive"],
                       help="plain cached approximate skip int8 learned autoregressive (default: all; those the "
                            "model lacks are skipped with a note)")
    bench.add_argument("--batch", type=int, default=500, help="batch N (default 500)")
    bench.add_argument("--rounds", type=int, default=2, help="rounds of every mode; quality on rounds x batch samples")
    bench.add_argument("--singles", type=int, default=20, help="samples drawn one at a time per mode and round")
    bench.add_argument("--train", action="store_true",
                       help="then training tokens/s and MFU at this model's size against a transformers BERT body "
                            "(ddm.throughput; --modes with no names: only that)")
    verb("run", cmd_run, "The main job: train, then evaluate.").add_argument("--force", action="store_true",
                                                                             help=force_help)
    for name, fn, text in (("encode", cmd_encode, "A tokenizer's inputs -> ids."),
                           ("decode", cmd_decode, "Ids -> a tokenizer's outputs.")):
        p = verb(name, fn, text, model=True)
        p.add_argument("--input", required=True)
        p.add_argument("--output", required=True)
    convert = sub.add_parser("convert", help="Bring a model folder saved by an older ddm to the current format.")
    convert.add_argument("directory", help="the model folder")
    convert.add_argument("--config", required=True, help="the experiment YAML it was trained with")
    convert.add_argument("overrides", nargs="*", metavar="key.sub=value")
    convert.set_defaults(fn=cmd_convert)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run a verb. Every expected failure (a bad config, a missing or damaged file, data that does
    not fit) is one line naming the field or file, exit code 2; `--debug` or DDM_DEBUG=1 shows
    the traceback instead."""
    args = build_parser().parse_args(argv)
    debug = args.debug or os.environ.get("DDM_DEBUG", "") not in ("", "0")
    try:
        set_threads(args.threads if args.threads is not None else os.environ.get("DDM_THREADS") or None)
        code = args.fn(args)
        end_processes()
        return code
    except (ConfigError, RegistryError) as e:
        if debug:
            raise
        print(f"config error: {e}", file=sys.stderr)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        if debug:
            raise
        message = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"error: {message} (DDM_DEBUG=1 shows the traceback)", file=sys.stderr)
    end_processes(wait=False)
    return 2


if __name__ == "__main__":
    sys.exit(main())
