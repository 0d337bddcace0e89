"""The training benchmark: what each method costs per step, how fast the feature banks fill compared
with the teacher's pure forward, how neighbour mining scales with the bank, and samples/s with 1 and
2 processes (torchrun, Gloo on CPU / NCCL on GPUs).

    python -m clipping_edge.benchmarks.training --out runs/training-bench            # vit-nano, batch 128
    python -m clipping_edge.benchmarks.training --device cuda --student vit-xs          # on a GPU

Targets it reports against: clip-ping <= 1.10x and a-clip-ping <= 1.6x the step time of clip;
bank extraction >= 85 % of the teacher's pure forward throughput. Writes OUT/training.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from clipping_edge.training.config import TrainConfig

STEP_TARGETS = {"clip-ping": 1.10, "a-clip-ping": 1.6}
BANK_TARGET = 0.85


def step_times(args: argparse.Namespace, out: Path) -> dict[str, dict]:
    """Median seconds per optimizer step of each method on the same batches, after warm-up."""
    from clipping_edge.training.data.augment import collate_views
    from clipping_edge.training.trainer import Trainer

    results = {}
    for method in ("clip", "clip-ping", "a-clip-ping"):
        for recipe in args.recipes:
            cfg = TrainConfig(data=args.data, out=str(out / f"steps-{method}-{recipe}"), student=args.student, method=method,
                              recipe=recipe, batch_size=args.batch_size, device=args.device, workers=0,
                              teacher_image_size=args.teacher_image_size, limit=args.batch_size * (args.steps + 2))
            trainer = Trainer(cfg)
            batches = list(torch.utils.data.DataLoader(trainer.dataset, batch_sampler=trainer.sampler, collate_fn=collate_views))
            if trainer.guide is not None:
                start = time.perf_counter()
                trainer.guide.refresh(0, 0)
                mining = time.perf_counter() - start
            times = []
            for i, batch in enumerate(batches):
                start = time.perf_counter()
                trainer.step(*batch)
                if trainer.device.type == "cuda":
                    torch.cuda.synchronize()
                if i >= 2:  # the first steps allocate and warm caches
                    times.append(time.perf_counter() - start)
            median = statistics.median(times)
            results[f"{method} {recipe}"] = {"seconds_per_step": median, "samples_per_second": args.batch_size / median,
                                             **({"mining_seconds": mining} if trainer.guide is not None else {})}
            print(f"{method:<12} {recipe:<9} {1e3 * median:8.1f} ms/step  {args.batch_size / median:7.1f} samples/s", flush=True)
    for key, row in results.items():
        method, recipe = key.split()
        row["ratio_to_clip"] = row["seconds_per_step"] / results[f"clip {recipe}"]["seconds_per_step"]
        if method in STEP_TARGETS:
            row["target"] = STEP_TARGETS[method]
            row["meets_target"] = row["ratio_to_clip"] <= STEP_TARGETS[method]
    return results


def bank_throughput(args: argparse.Namespace, out: Path) -> dict:
    """Images/s of a full bank extraction (decode + resize + teacher) vs the teacher alone on ready tensors."""
    from clipping_edge.training.banks import build_banks
    from clipping_edge.training.data.pairs import read_pairs, resolve_split
    from clipping_edge.training.teachers import load_image_teacher, load_text_teacher

    device = torch.device("cuda" if args.device == "cuda" else "cpu")
    image_teacher = load_image_teacher("efficientnet-lite0", args.teacher_image_size).to(device)
    text_teacher = load_text_teacher("minilm").to(device)
    batch = torch.rand(64, 3, image_teacher.image_size, image_teacher.image_size, device=device)
    image_teacher.encode(batch)
    start, n = time.perf_counter(), 0
    while time.perf_counter() - start < 10:
        image_teacher.encode(batch)
        n += len(batch)
    if device.type == "cuda":
        torch.cuda.synchronize()
    pure = n / (time.perf_counter() - start)
    pairs = read_pairs(resolve_split(args.data, "train"), limit=args.bank_images)
    banks = build_banks(pairs, image_teacher, text_teacher, root=out / "banks", workers=args.workers, device=device)
    if banks.reused:
        raise SystemExit(f"{out / 'banks'} already holds these banks: remove it to measure extraction")
    extraction = banks.stats["images_per_second"]
    row = {"teacher_forward_images_per_second": pure, "extraction_images_per_second": extraction,
           "fraction": extraction / pure, "target": BANK_TARGET, "meets_target": extraction / pure >= BANK_TARGET,
           "images": len(pairs), "teacher_image_size": image_teacher.image_size, "workers": args.workers}
    print(f"bank extraction {extraction:.0f} images/s = {100 * row['fraction']:.0f} % of the teacher's pure forward "
          f"({pure:.0f} images/s at {image_teacher.image_size} px)", flush=True)
    return row


def mining_scaling(sizes: list[int], support: int = 65536) -> list[dict]:
    """Seconds to mine image (1280-d) and text (384-d) neighbours for every row of random unit banks."""
    from clipping_edge.training.neighbours import mine_neighbours

    rows = []
    rng = np.random.default_rng(0)
    for n in sizes:
        image = rng.standard_normal((n, 1280), dtype=np.float32)
        text = rng.standard_normal((n, 384), dtype=np.float32)
        image /= np.linalg.norm(image, axis=1, keepdims=True)
        text /= np.linalg.norm(text, axis=1, keepdims=True)
        for method in ("exact", "usearch"):
            if method == "exact" and n * min(n, support) > 70_000 * 65_536:
                continue  # tens of minutes on a CPU: that is what the usearch path is for
            found = mine_neighbours(image.astype(np.float16), text.astype(np.float16), support, torch.Generator().manual_seed(0),
                                    method=method)
            rows.append({"rows": n, "support": min(n, support), "method": method, "seconds": found.seconds})
            print(f"mining {n:>8} rows, support {min(n, support):>6}, {method:<8} {found.seconds:7.2f} s", flush=True)
    return rows


def process_scaling(args: argparse.Namespace, out: Path) -> dict:
    """samples/s of one short clip-ping epoch with 1 and 2 processes (same global batch)."""
    results = {}
    for nproc in (1, 2):
        run = out / f"ddp-{nproc}"
        cmd = [sys.executable, "-m", "clipping_edge.cli", "train", "--nproc", str(nproc), "--data", args.data, "--out", str(run),
               "--student", args.student, "--method", "clip-ping", "--epochs", "1", "--batch-size", str(args.batch_size // nproc),
               "--limit", str(args.batch_size * args.steps), "--workers", "0", "--device", args.device,
               "--teacher-image-size", str(args.teacher_image_size)]
        threads = str(max(1, (os.cpu_count() or 2) // nproc))  # the same cores in all, shared by the processes
        subprocess.run(cmd, check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": threads})
        log = json.loads((run / "log.jsonl").read_text().splitlines()[-1])
        results[nproc] = log["samples_per_second"]
        print(f"{nproc} process(es): {log['samples_per_second']:.1f} samples/s", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="synthetic")
    parser.add_argument("--student", default="vit-nano")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--recipes", nargs="+", default=["basic", "improved"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--teacher-image-size", type=int, default=128)
    parser.add_argument("--bank-images", type=int, default=2048)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--mining-sizes", type=int, nargs="+", default=[8000, 32000, 65536, 262144])
    parser.add_argument("--skip", nargs="*", default=[], choices=["steps", "banks", "mining", "processes"])
    parser.add_argument("--out", default="runs/training-bench")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    record: dict = {"args": vars(args), "torch": torch.__version__,
                    "device": torch.cuda.get_device_name() if args.device == "cuda" else f"cpu x{torch.get_num_threads()} threads"}
    parts = {"steps": lambda: step_times(args, out), "banks": lambda: bank_throughput(args, out),
             "mining": lambda: mining_scaling(args.mining_sizes), "processes": lambda: process_scaling(args, out)}
    for name, measure in parts.items():
        if name not in args.skip:
            record[name] = measure()
            (out / "training.json").write_text(json.dumps(record, indent=2, default=str))
    print(f"wrote {out / 'training.json'}")


if __name__ == "__main__":
    main()
