"""Benchmark's command, registered with the CLI through the `clipping_edge.commands` entry point (pyproject.toml).
A device measures its bundles with the runtime alone; only --checkpoint (export what is missing) needs torch."""

from __future__ import annotations

import argparse
from pathlib import Path

from clipping_edge.cli_args import POSITIVE, number
from clipping_edge.commands import CommandGroup, Commands


def cmd_benchmark(args: argparse.Namespace) -> int:
    from .suite import run

    return run(args.checkpoint, args.bundles or [], args.data, args.targets, args.precisions, args.threads,
               Path(args.out), Path(args.bundle_dir) if args.bundle_dir else None, args.floor)


def register(commands: Commands) -> None:
    p = commands.add("benchmark", cmd_benchmark, help="every target x precision side by side: latency, memory, accuracy",
                     description="Exports what is missing, then measures every bundle with PyTorch eager, a naive "
                                 "ONNX export and the machine's GEMM peak as reference rows.")
    p.add_argument("--checkpoint", help="export and measure every target x precision of this student")
    p.add_argument("--bundles", nargs="+", help="measure these bundles (or folders of bundles) instead / as well")
    p.add_argument("--bundle-dir", help="where --checkpoint bundles live and missing ones are written (default OUT/bundles)")
    p.add_argument("--data", help="labelled data (default: the checkpoint's training data, test split)")
    from ..export.targets import TARGETS  # the table only: imports no converter

    p.add_argument("--targets", nargs="+", default=list(TARGETS), help="targets to export and measure (default: all)")
    p.add_argument("--precisions", nargs="+", help="only these precisions (default: all a target offers)")
    p.add_argument("--threads", type=POSITIVE, help="pin every row to N threads (default: each runtime's choice)")
    p.add_argument("--floor", type=number(float, 0), help="exit 1 if a valid row's zero-shot top-1 (%%) is below this")
    p.add_argument("--out", default="runs/benchmark", help="folder for benchmark.csv/.json/.png (default runs/benchmark)")


COMMANDS = CommandGroup(stage=30, register=register)
