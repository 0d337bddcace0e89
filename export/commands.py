"""Export's commands: `export`, and `demo` (the whole path: it trains, exports and classifies), registered with the
CLI through the `clipping_edge.commands` entry points (pyproject.toml). Importing this module imports no torch."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from clipping_edge.cli_args import POSITIVE, read_labels
from clipping_edge.commands import CommandGroup, Commands, Needs

EXPORT = Needs("export", ("torch", "onnx", "safetensors"))
DEMO = Needs("demo", ("torch", "onnx", "skimage", "timm"))


def cmd_export(args: argparse.Namespace) -> None:
    from .bundle import export_bundle, export_all

    labels = read_labels(args.labels) if args.labels is not None else None
    if args.target == "all":
        results = export_all(args.checkpoint, Path(args.out), args.quantize, args.data, args.allow_degraded,
                             args.max_top1_drop, args.force, labels, args.labels_index)
        if args.json:  # the last stdout line: each target's parity record
            print(json.dumps(results, default=str))
    else:
        bundle, parity = export_bundle(args.checkpoint, args.out, args.target, args.quantize, args.data,
                                       args.allow_degraded, args.max_top1_drop, args.force, labels, args.labels_index)
        if args.json:  # the last stdout line: the bundle and its parity record
            print(json.dumps({"bundle": str(bundle), "parity": parity}, default=str))


def cmd_demo(args: argparse.Namespace) -> None:
    from .demo import run_demo

    run_demo(Path(args.out), epochs=args.epochs, data=args.data)


def _targets_help() -> str:
    """The export table as help text. Reading it imports no converter."""
    from .targets import TARGETS

    lines = ["targets and precisions:"]
    for t in TARGETS.values():
        lines.append(f"  {t.name} ({', '.join(t.aliases)})")
        lines += [f"    {name:<13} {spec.recipe}" for name, spec in t.precisions.items()]
        lines.append(f"    {'auto':<13} tries {' > '.join(t.auto_order)} per tower")
    return "\n".join(lines)


def register_export(commands: Commands) -> None:
    p = commands.add("export", cmd_export, needs=EXPORT, help="export both towers to a validated bundle",
                     description="Converts both towers for a target and precision, validates them against PyTorch on "
                                 "held-out images and writes the bundle only if they pass.",
                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_targets_help())
    p.add_argument("--checkpoint", required=True, help="a checkpoint folder written by `clipping-edge train` (OUT/checkpoint) "
                                                        "or `import`, an import spec (open_clip:..., hf:...), or "
                                                        "shipped:NAME, a student that ships trained (docs/training.md)")
    p.add_argument("--target", default="onnx", help="a target below, or 'all' (one bundle per target under --out; default onnx)")
    p.add_argument("--quantize", default="none",
                   help="none (fp32), a precision the target offers (below), one per tower (image=int8,text=fp32), or "
                        "auto: per tower the fastest precision that stays within --max-top1-drop")
    p.add_argument("--max-top1-drop", type=float, default=None,
                   help="zero-shot top-1 points an export may lose (default: the precision's gate; auto: 1.0)")
    p.add_argument("--out", required=True, help="bundle directory to write")
    p.add_argument("--data", help="labelled data to validate on (default: the training dataset's test split)")
    p.add_argument("--allow-degraded", action="store_true", help="keep a bundle that fails validation")
    labels = p.add_mutually_exclusive_group()
    labels.add_argument("--labels", help="also write an app-ready classifier (one graph: image -> probabilities of "
                                         "these classes, labels in the format's metadata): 'a,b,c' or a labels.txt")
    labels.add_argument("--labels-index", help="as --labels, with the classes and prototypes of an `index build` index")
    p.add_argument("--json", action="store_true", help="end with one JSON line: the bundle and its parity record "
                                                       "(with --target all, every target's)")
    p.add_argument("--force", action="store_true", help="replace --out even if it is not a previous bundle")


def register_demo(commands: Commands) -> None:
    p = commands.add("demo", cmd_demo, needs=DEMO, help="the whole path on the built-in data: train, evaluate, export, classify",
                     description="Trains the demo student from the packaged teachers on the built-in data, evaluates it, "
                                 "exports it to ONNX and classifies six real photos; ends with a table.")
    p.add_argument("--out", default="runs/demo", help="folder for the run, the bundle and the index (default runs/demo)")
    p.add_argument("--epochs", type=POSITIVE, default=10, help="training epochs (each is seconds: both towers are locked and "
                                                               "cached; default 10)")
    p.add_argument("--data", default="synthetic", help="training data (default: the built-in synthetic set, no apt needed)")


EXPORT_COMMANDS = CommandGroup(stage=20, register=register_export)
DEMO_COMMANDS = CommandGroup(stage=0, register=register_demo)
