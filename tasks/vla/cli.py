"""`ddm vla demos|train|eval|run`: the robot policy from one YAML (joins `ddm` through the
`ddm.commands` entry point; the core never imports this).

    ddm vla demos --config configs/vla_mt10_cpu.yaml            # record the expert demonstrations
    ddm vla train --config configs/vla_mt10_cpu.yaml --decoders diffusion autoregressive regression
    ddm vla eval  --config configs/vla_mt10_cpu.yaml eval.decoders=[diffusion,autoregressive,regression]
    ddm vla run   --config configs/vla_mt10_cpu.yaml            # demos + train + eval of eval.decoders

Overrides are dotted config fields, e.g. eval.episodes=5 policy.sample.steps=8.
"""

from __future__ import annotations

import argparse
import os

from ddm.config import ConfigError

from .config import DECODERS, load_vla_experiment


def _experiment(args):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the encoders load from installed wheels only
    try:
        return load_vla_experiment(args.config, args.overrides)
    except ConfigError as e:
        raise SystemExit(f"error: {e}") from None


def cmd_demos(args) -> int:
    from .train import ensure_demos

    exp = _experiment(args)
    print(f"demos: {ensure_demos(exp)}")
    return 0


def cmd_train(args) -> int:
    from .train import train_policy

    exp = _experiment(args)
    for decoder in args.decoders or [exp.policy.decoder]:
        train_policy(exp, decoder)
    return 0


def cmd_eval(args) -> int:
    from .evaluate import evaluate_policy, format_comparison, format_summary

    exp = _experiment(args)
    summaries = []
    for decoder in exp.eval.decoders:
        try:
            summary = evaluate_policy(exp, decoder)
        except FileNotFoundError as e:
            raise SystemExit(f"error: {e}") from None
        print(format_summary(summary))
        summaries.append(summary)
    if len(summaries) > 1:
        print(format_comparison(summaries))
    return 0


def cmd_run(args) -> int:
    from .train import train_policy

    exp = _experiment(args)
    for decoder in exp.eval.decoders:
        train_policy(exp, decoder)
    return cmd_eval(args)


def register(subparsers) -> None:
    """Add `ddm vla ...` (the `ddm.commands` entry point)."""
    p = subparsers.add_parser("vla", help="Robot policy on MetaWorld MT10: demos, train, closed-loop eval.",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = p.add_subparsers(dest="vla_command", required=True, metavar="VERB")

    def verb(name: str, fn, help_text: str):
        v = verbs.add_parser(name, help=help_text, description=help_text)
        v.add_argument("--config", required=True, help="VLA YAML, e.g. configs/vla_mt10_cpu.yaml")
        v.add_argument("overrides", nargs="*", metavar="key.sub=value")
        v.set_defaults(fn=fn)
        return v

    verb("demos", cmd_demos, "Record the scripted experts' demonstrations (skipped when already there).")
    train = verb("train", cmd_train, "Train policies (recording the demos first when missing).")
    train.add_argument("--decoders", nargs="+", choices=DECODERS,
                       help="decoders to train, one policy each (default: policy.decoder)")
    verb("eval", cmd_eval, "Closed-loop evaluation of the trained policies named in eval.decoders.")
    verb("run", cmd_run, "Demos, training and evaluation of every decoder in eval.decoders.")
