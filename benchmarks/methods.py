"""CLIP vs CLIP-PING at equal epochs on the same data: held-out zero-shot and retrieval.

    python -m benchmarks.methods --epochs 6 --out runs/methods

Each method trains from the same seed; the table goes to stdout and OUT/methods.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from training.config import METHODS, TrainConfig
from training.trainer import train

COLUMNS = ("zero_shot_top1", "zero_shot_top1_seen", "zero_shot_top1_held_out", "zero_shot_top5",
           "image_to_text_R@1", "text_to_image_R@1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="synthetic")
    parser.add_argument("--student", default="vit-nano")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--teacher-image-size", type=int, default=128)
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--out", default="runs/methods")
    args = parser.parse_args()

    results = {}
    for method in args.methods:
        out = Path(args.out) / f"{method}-s{args.seed}"
        start = time.perf_counter()
        train(TrainConfig(data=args.data, out=str(out), student=args.student, method=method, epochs=args.epochs,
                          seed=args.seed, teacher_image_size=args.teacher_image_size,
                          resume=(out / "checkpoint" / "trainer_state.pt").exists()))
        log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
        results[method] = {**json.loads((out / "metrics.json").read_text()), "train_seconds": round(time.perf_counter() - start, 1),
                           "samples_per_second": log[-1]["samples_per_second"]}
    print(f"\n{args.student}, {args.epochs} epochs, seed {args.seed}, data {args.data}\n")
    print("| method | " + " | ".join(COLUMNS) + " | samples/s |")
    print("|---" * (len(COLUMNS) + 2) + "|")
    for method, m in results.items():
        print(f"| {method} | " + " | ".join(f"{m.get(c, float('nan')):.3f}" for c in COLUMNS) + f" | {m['samples_per_second']:.0f} |")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "methods.json").write_text(json.dumps({"args": vars(args), "results": results}, indent=2))


if __name__ == "__main__":
    main()
