"""The method ablation: clip vs clip-ping vs a-clip-ping, each with the basic and the improved recipe,
at equal epochs, over several seeds (mean ± std), trained on synthetic + real captioned data.

    clipping-edge data synth --out runs/data/synthetic-4k --n-train 4000   # once
    clipping-edge data prepare emoji --out runs/data/emoji          # once (Debian packages: see README)
    clipping-edge data prepare openclipart --out runs/data/openclipart
    clipping-edge data prepare fashion-mnist --out runs/data/fashion-mnist
    python -m benchmarks.ablation --seeds 0 1 2 --out runs/ablation   # 3 epochs, teacher at 64 px

Evaluated on the held-out synthetic split (with its never-seen colour-shape compositions), zero-shot
Fashion-MNIST and emoji subgroups, and image<->text retrieval on the synthetic split. Each run is kept
under OUT/<method>-<recipe>-s<seed>; a finished run is not trained again, so the script resumes.
Writes OUT/ablation.json and OUT/ablation.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from training.config import METHODS, TrainConfig

RECIPES = ("basic", "improved")
DEFAULT_DATA = "runs/data/synthetic-4k+runs/data/emoji+runs/data/openclipart"
EVALS = {  # name -> (dataset, test images used)
    "synthetic": ("runs/data/synthetic-4k", None),
    "fashion-mnist": ("runs/data/fashion-mnist", 2000),
    "emoji": ("runs/data/emoji", None),
}
COLUMNS = [("synthetic", "zero_shot_top1", "synthetic top-1"), ("synthetic", "zero_shot_top1_held_out", "held-out compositions"),
           ("fashion-mnist", "zero_shot_top1", "Fashion-MNIST top-1"), ("emoji", "zero_shot_top1", "emoji subgroup top-1"),
           ("synthetic", "image_to_text_R@1", "R@1 i→t"), ("synthetic", "text_to_image_R@1", "R@1 t→i")]


def run_one(method: str, recipe: str, seed: int, args: argparse.Namespace) -> dict:
    from training.checkpoint import load_student
    from training.data.pairs import read_pairs, resolve_split
    from training.evaluate import evaluate
    from training.trainer import train

    weights = "" if (args.lambda_nn, args.lambda_xnn) == (1.0, 1.0) else f"-l{args.lambda_nn:g}-{args.lambda_xnn:g}"
    out = Path(args.out) / f"{method}-{recipe}{weights}-s{seed}"
    result_file = out / "ablation-result.json"
    if result_file.is_file():
        return json.loads(result_file.read_text())
    train(TrainConfig(data=args.data, out=str(out), student=args.student, method=method, recipe=recipe, epochs=args.epochs,
                      seed=seed, batch_size=args.batch_size, teacher_image_size=args.teacher_image_size,
                      lambda_nn=args.lambda_nn, lambda_xnn=args.lambda_xnn,
                      resume=(out / "checkpoint" / "trainer_state.pt").exists()))
    model, tokenizer, _ = load_student(out / "checkpoint")
    metrics = {name: evaluate(model, tokenizer, read_pairs(resolve_split(data, "test"), limit=limit))
               for name, (data, limit) in EVALS.items()}
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    result = {"method": method, "recipe": recipe, "seed": seed, "metrics": metrics,
              "samples_per_second": statistics.median(r["samples_per_second"] for r in log),
              "train_seconds": sum(r["seconds"] for r in log)}
    result_file.write_text(json.dumps(result, indent=2))
    return result


def mean_std(values: list[float]) -> str:
    values = [100 * v for v in values]
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def table(results: list[dict], seeds: list[int]) -> str:
    lines = ["| method | recipe | seeds | " + " | ".join(c[2] for c in COLUMNS) + " |", "|---" * (len(COLUMNS) + 3) + "|"]
    for method in METHODS:
        for recipe in RECIPES:
            runs = [r for r in results if r["method"] == method and r["recipe"] == recipe]
            if not runs:
                continue
            cells = [mean_std([r["metrics"][ev][key] for r in runs]) for ev, key, _ in COLUMNS]
            lines.append(f"| {method} | {recipe} | {len(runs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + f"\n\n(%, mean ± std over the seeds run, of {', '.join(map(str, seeds))})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--student", default="vit-nano")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--teacher-image-size", type=int, default=64)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--lambda-nn", type=float, default=1.0)
    parser.add_argument("--lambda-xnn", type=float, default=1.0)
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES))
    parser.add_argument("--out", default="runs/ablation")
    parser.add_argument("--report", action="store_true", help="only tabulate the runs already finished under --out")
    args = parser.parse_args()

    results = []
    for seed in args.seeds:  # seed-major: a cut-off run still has every config at the first seeds
        for method in args.methods:
            for recipe in args.recipes:
                if args.report:
                    results += [json.loads(f.read_text()) for f in Path(args.out).glob(f"{method}-{recipe}-s{seed}/ablation-result.json")]
                else:
                    results.append(run_one(method, recipe, seed, args))
                    write_report(results, args)
    print(write_report(results, args))


def write_report(results: list[dict], args: argparse.Namespace) -> str:
    Path(args.out).mkdir(parents=True, exist_ok=True)
    report = f"{args.student}, {args.epochs} epochs, data {args.data}\n\n{table(results, sorted({r['seed'] for r in results}))}\n"
    Path(args.out, "ablation.md").write_text(report)
    Path(args.out, "ablation.json").write_text(json.dumps({"args": vars(args), "results": results}, indent=2))
    return report


if __name__ == "__main__":
    main()
