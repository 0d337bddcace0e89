"""Training's commands: `train`, `int8-finetune`, `eval`, `import` and `data`, registered with the CLI through the
`clipping_edge.commands` entry point (pyproject.toml). Importing this module imports no torch."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from clipping_edge.cli_args import POSITIVE, add_dataclass_args, number
from clipping_edge.commands import CommandGroup, Commands, Needs
from clipping_edge.shell import command_name

TRAIN = Needs("train", ("torch", "timm", "transformers", "safetensors", "tqdm"))
DATA = Needs("train", ("tqdm",))


def cmd_train(args: argparse.Namespace) -> int | None:
    from .config import TrainConfig

    cfg = TrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)})
    if args.nproc > 1:
        from .distributed import launch_torchrun

        return launch_torchrun(cfg, args.nproc)
    from .trainer import train

    train(cfg)
    return None


def cmd_int8_finetune(args: argparse.Namespace) -> None:
    from .config import Int8FinetuneConfig
    from .int8_finetune import finetune_for_int8

    finetune_for_int8(Int8FinetuneConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Int8FinetuneConfig)}))


def cmd_eval(args: argparse.Namespace) -> None:
    from .evaluate import evaluate_checkpoint, format_report

    from clipping_edge.atomic import write_json_atomic

    report = evaluate_checkpoint(args.checkpoint, args.data, args.split, args.templates, args.probe, args.probe_limit,
                                 args.device)
    print(format_report(report))
    if args.json:
        write_json_atomic(args.json, report.to_json())
        print(f"wrote {args.json}")


def cmd_import(args: argparse.Namespace) -> None:
    from .clip_import import import_clip

    out = import_clip(args.spec, args.out, args.force)
    print(f"imported {args.spec} -> {out}")
    bundle = Path(args.out).with_name(Path(args.out).name + "-onnx")
    print(f"next: {command_name()} export --checkpoint {out} --target onnx --out {bundle}")


def cmd_data_synth(args: argparse.Namespace) -> None:
    from .data.synthetic import generate

    out = generate(args.out, n_train=args.n_train, n_test=args.n_test, seed=args.seed, image_size=args.image_size,
                   force=args.force)
    print(f"wrote {args.n_train} train and {args.n_test} test pairs to {out}")


def cmd_data_prepare(args: argparse.Namespace) -> None:
    from .data.prepare import prepare

    # Dataset-specific flags travel only when given, so one that does not apply is reported, not ignored.
    options = {k: getattr(args, k) for k in ("image_size", "skin_tones", "label", "font", "max_pixels")
               if getattr(args, k) is not None} | {"force": args.force}
    done = prepare(args.name, args.out, source=args.source, seed=args.seed, limit_per_class=args.limit_per_class,
                   **options)
    counts = ", ".join(f"{split} {n}" for split, n in done.counts.items() if n)
    classes = ", ".join(done.classes[:12]) + (f", ... ({len(done.classes)} in all)" if len(done.classes) > 12 else "")
    print(f"wrote {done.name} to {done.out} in {done.seconds:.1f} s: {counts} pairs; {len(done.classes)} classes: {classes}")
    if done.skipped:
        print("skipped: " + ", ".join(f"{n} {why}" for why, n in done.skipped.items()))
    print(f"next: {command_name()} train --data {done.out} --out runs/{done.name}")


def cmd_data_shard(args: argparse.Namespace) -> None:
    from .data.shard_writer import write_shards

    written = write_shards(args.data, args.out, args.per_shard, args.force)
    print(f"wrote {args.out}: " + ", ".join(f"{split} {n} pairs in {k} shard(s)" for split, (n, k) in written.items()))
    print(f"next: {command_name()} train --data {args.out} --out runs/shards")


def _train_help() -> str:
    """The registered students, methods and recipes, a line each (read from the registries themselves)."""
    from .config import METHOD_HELP, RECIPE_HELP, RECOMMENDED, describe_student, list_students, student_config

    def block(title: str, rows: dict[str, str]) -> list[str]:
        return [f"{title}:", *(f"  {name:<22} {line}" for name, line in rows.items())]

    students = {name: describe_student(student_config(name)) for name in list_students() if not name.startswith("test-")}
    return "\n".join([*block("students (--student)", students), "", *block("methods (--method)", METHOD_HELP), "",
                      *block("recipes (--recipe)", RECIPE_HELP), "",
                      "With no --student, train uses the student and recipe recommended for real images on a CPU: "
                      + " ".join(f"--{k.replace('_', '-')}" + ("" if v is True else f" {v}" if v != "" else " ''")
                                 for k, v in RECOMMENDED.items())
                      + " (each can be set on its own); naming a student starts from the other defaults shown above."])


def register(commands: Commands) -> None:
    from .config import MINIMUMS, Int8FinetuneConfig, TrainConfig  # torch-free: only dataclasses

    p = commands.add("train", cmd_train, needs=TRAIN, help="train a student (CLIP or CLIP-PING); writes OUT/checkpoint",
                     description="Trains a student on image-caption pairs with CLIP or CLIP-PING and writes "
                                 "OUT/checkpoint, which `export` and `eval` take.",
                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_train_help())
    add_dataclass_args(p, TrainConfig, MINIMUMS)
    p.add_argument("--nproc", type=POSITIVE, default=1, help="processes on this machine, launched with torchrun (DDP)")

    p = commands.add("int8-finetune", cmd_int8_finetune, needs=TRAIN,
                     help="quantization-aware fine-tuning of the image tower: a checkpoint whose int8 exports keep the "
                          "float model's answers")
    add_dataclass_args(p, Int8FinetuneConfig, {"images": (1, False), "epochs": (1, False), "lr": (0, True),
                                                "batch_size": (1, False)})

    p = commands.add("eval", cmd_eval, needs=TRAIN,
                     help="zero-shot, retrieval, linear-probe and composition metrics of a checkpoint")
    p.add_argument("--checkpoint", required=True, help="a checkpoint folder written by `clipping-edge train` (OUT/checkpoint)")
    p.add_argument("--data", help="dataset (default: the one it was trained on)")
    p.add_argument("--split", default="test", help="which split of --data to score (default test)")
    p.add_argument("--templates", help="prompt set for zero-shot: dataset (its zeroshot.json templates, else 7), "
                                       "7 (CLIP's ImageNet ensemble) or 80 (CLIP's full ImageNet set); default: dataset")
    p.add_argument("--probe", action=argparse.BooleanOptionalAction, default=True,
                   help="linear probe: logistic regression on frozen image features of the labelled train split")
    p.add_argument("--probe-limit", type=POSITIVE, default=5000, help="train images for the linear probe, a random subset")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--json", help="also write the report to this JSON file")

    p = commands.add("import", cmd_import, needs=TRAIN,
                     help="a pretrained CLIP-family model (OpenCLIP, MobileCLIP, SigLIP, Hugging Face CLIP or SigLIP) as "
                          "a checkpoint that export, train and eval take",
                     description="Weights only from local files: nothing is downloaded.")
    p.add_argument("spec", help="open_clip:ARCH=WEIGHTS.safetensors (an open_clip architecture, e.g. MobileCLIP2-S0), "
                                "open_clip:CONFIG.json=WEIGHTS, open_clip:FOLDER (a downloaded open_clip hub folder), "
                                "hf:FOLDER (a transformers CLIPModel or SiglipModel folder); WEIGHTS may be 'random' "
                                "(untrained, for tests). A model with its own tokenizer (SigLIP) reads the tokenizer.json "
                                "or spiece.model beside its weights or config")
    p.add_argument("--out", required=True, help="checkpoint folder to write")
    p.add_argument("--force", action="store_true", help="replace --out even if it is not a previous checkpoint")

    data = commands.group("data", help="datasets")
    p = data.add("synth", cmd_data_synth, needs=DATA, help="write the synthetic dataset in the generic format")
    p.add_argument("--out", required=True, help="dataset folder to write (train/, test/, zeroshot.json)")
    p.add_argument("--n-train", type=POSITIVE, default=8000, help="training pairs (default 8000)")
    p.add_argument("--n-test", type=POSITIVE, default=960, help="test pairs (default 960)")
    p.add_argument("--seed", type=int, default=0, help="scenes and captions are a function of the seed (default 0)")
    p.add_argument("--image-size", type=number(int, 16), default=64, help="square side in px (default 64)")
    p.add_argument("--force", action="store_true", help="replace --out even if it is not a previous dataset")

    p = data.add("prepare", cmd_data_prepare, needs=DATA,
                 help="write a real dataset that ships in Debian packages in the generic format",
                 description="fashion-mnist (dataset-fashion-mnist), emoji (unicode-data + fonts-noto-color-emoji) "
                             "openclipart (openclipart-png + openclipart-svg) or tuxpaint (tuxpaint-stamps-default), "
                             "read from the packages' files "
                             "or your own copy in the same upstream format (--source).")
    p.add_argument("name", help="fashion-mnist, emoji, openclipart or tuxpaint")
    p.add_argument("--out", required=True, help="dataset folder to write (train/, val/, test/, zeroshot.json)")
    p.add_argument("--source", help="the upstream files: the IDX folder, emoji-test.txt, the folder holding png/ and svg/, "
                   "or the stamps folder")
    p.add_argument("--seed", type=int, default=0, help="fixes the split and the caption choices")
    p.add_argument("--limit-per-class", type=POSITIVE, help="keep at most N pairs per class (fashion-mnist: per upstream file)")
    p.add_argument("--image-size", type=number(int, 16),
                   help="emoji (default 96), openclipart and tuxpaint (default 128): square side in px")
    p.add_argument("--skin-tones", action="store_true", default=None,
                   help="emoji: keep skin-tone variants (each in its base emoji's split) instead of the base only")
    p.add_argument("--label", choices=["subgroup", "group"], help="emoji: classes are CLDR subgroups (default) or groups")
    p.add_argument("--font", help="emoji: a colour emoji font that opens at size 109 (default: Noto Color Emoji)")
    p.add_argument("--max-pixels", type=POSITIVE, help="openclipart: skip PNGs larger than this (default 40 000 000)")
    p.add_argument("--force", action="store_true", help="replace --out even if it is not a previous dataset")

    p = data.add("shard", cmd_data_shard, needs=DATA, help="write a generic-format dataset as webdataset-style .tar shards")
    p.add_argument("--data", required=True, help="a dataset in the generic format (or 'synthetic')")
    p.add_argument("--out", required=True, help="folder to write: <split>/<split>-NNNNNN.tar and zeroshot.json")
    p.add_argument("--per-shard", type=POSITIVE, default=1000, help="pairs per shard")
    p.add_argument("--force", action="store_true", help="replace --out even if it is not a previous dataset")


COMMANDS = CommandGroup(stage=10, register=register)
