"""The method ablation: clip vs clip-ping vs a-clip-ping, each with the basic and the improved recipe,
at equal epochs, over several seeds (mean ± std), trained on synthetic + real captioned data; then
clip-ping variants that probe why it does or does not beat clip (λ, teacher resolution, support size).

    clipping-edge data synth --out runs/data/synthetic-4k --n-train 4000   # once
    clipping-edge data prepare emoji --out runs/data/emoji          # once (Debian packages: see README)
    clipping-edge data prepare openclipart --out runs/data/openclipart
    clipping-edge data prepare fashion-mnist --out runs/data/fashion-mnist
    python -m clipping_edge.benchmarks.ablation --seeds 0 1 2 --jobs 2 --out runs/ablation   # 3 epochs, teacher at 64 px

`--suite real` is the same comparison where it matters: the effnet-minilm student initialised from the
teachers (image tower locked and cached, text tower's last two blocks trained: LiT) on the real pairs
only (emoji with skin tones + Open Clip Art), scored on their real test splits and on Fashion-MNIST
(never trained on), beside the same student trained from scratch (`--inits scratch pretrained`):

    clipping-edge data prepare emoji --skin-tones --out runs/data/emoji-all
    python -m clipping_edge.benchmarks.ablation --suite real --methods clip clip-ping --seeds 0 1 2 --out runs/ablation-real

Its `locked` init (both towers locked whole: only the projections train, on cached features) scores the
three val splits after every epoch, from the cache too: the validation curve, in each run's log.jsonl and
result. README's table: `--inits locked locked-anchors --recipes basic --epochs 4` (the epochs its curve
chose; `locked-anchors` adds the ImageNet-head anchors, to CLIP-PING's feature banks too).

Evaluated on the held-out synthetic split (with its never-seen colour-shape compositions), zero-shot
Fashion-MNIST and emoji subgroups, and image<->text retrieval on the synthetic split. Each run is kept
under OUT/<method>-<recipe>[-<variant>]-s<seed>; a finished run is not trained again, so the script
resumes. `--jobs N` trains N runs at once, each on cores/N threads (on a small CPU machine that beats
one run on all cores); the teachers' feature banks and a locked image tower's features (training and
evaluation splits) are extracted on all cores before they start; runs that still need the same cache at once
(a locked text tower's captions) wait while one builds it. Writes OUT/ablation.json and OUT/ablation.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from clipping_edge.atomic import write_bytes_atomic
from clipping_edge.training.config import METHODS, TrainConfig

RECIPES = ("basic", "improved")


@dataclass(frozen=True)
class Suite:
    """What one ablation trains on, evaluates on and tabulates."""
    data: str
    student: str
    epochs: int
    evals: dict[str, tuple[str, int | None]]  # name -> (dataset, test images used)
    columns: list[tuple[str, str, str]]  # (eval, metric, column title)
    settings: dict  # TrainConfig fields every run of the suite shares
    inits: dict[str, dict]  # name -> TrainConfig fields of that initialisation


# Both towers locked whole: only the projections train, on cached features (seconds an epoch). Cheap
# enough to score the val splits every epoch: the validation curve.
LOCKED = {"lock_image": True, "lock_text": True, "lr": 1e-3, "eval_every": 1, "eval_limit": 2000,
          "eval_data": "runs/data/fashion-mnist,runs/data/emoji-all,runs/data/openclipart"}

SUITES = {
    "synthetic": Suite(
        "runs/data/synthetic-4k+runs/data/emoji+runs/data/openclipart", "vit-nano", 3,
        {"synthetic": ("runs/data/synthetic-4k", None), "fashion-mnist": ("runs/data/fashion-mnist", 2000),
         "emoji": ("runs/data/emoji", None)},
        [("synthetic", "zero_shot_top1", "synthetic top-1"), ("synthetic", "zero_shot_top1_seen", "seen compositions"),
         ("synthetic", "zero_shot_top1_held_out", "held-out compositions"),
         ("fashion-mnist", "zero_shot_top1", "Fashion-MNIST top-1"), ("emoji", "zero_shot_top1", "emoji subgroup top-1"),
         ("synthetic", "image_to_text_R@1", "R@1 i→t"), ("synthetic", "text_to_image_R@1", "R@1 t→i")],
        {"tokenizer": "captions"}, {"scratch": {}}),
    "real": Suite(
        "runs/data/emoji-all+runs/data/openclipart", "effnet-minilm", 10,
        {"fashion-mnist": ("runs/data/fashion-mnist", 2000), "emoji": ("runs/data/emoji-all", None),
         "openclipart": ("runs/data/openclipart", None)},
        [("fashion-mnist", "zero_shot_top1", "Fashion-MNIST top-1"), ("emoji", "zero_shot_top1", "emoji subgroup top-1"),
         ("openclipart", "zero_shot_top1", "Open Clip Art top-1"), ("openclipart", "image_to_text_R@1", "Open Clip Art R@1 i→t"),
         ("emoji", "image_to_text_R@1", "emoji R@1 i→t")],
        {"teacher_image_size": None, "lr": 5e-4, "warmup_steps": 50},
        {"pretrained": {"lock_image": True, "lock_text": True, "unlocked_text_blocks": 2},
         "locked": LOCKED,
         # The same, plus one pair per ImageNet class from the image teacher's head (training/anchors.py).
         "locked-anchors": {**LOCKED, "anchors": "imagenet"},
         "scratch": {"student": "effnet-minilm-scratch", "lr": 1e-3}}),
}
# The investigation: clip-ping basic with one setting changed from the defaults at a time.
VARIANTS: dict[str, dict] = {
    "lambda-0.25": {"lambda_nn": 0.25, "lambda_xnn": 0.25},  # the neighbour terms start ~4x CLIP's loss at λ = 1
    "lambda-0.5": {"lambda_nn": 0.5, "lambda_xnn": 0.5},
    "lambda-2": {"lambda_nn": 2.0, "lambda_xnn": 2.0},  # Fashion-MNIST's gain grew with λ up to 1
    "teacher-128px": {"teacher_image_size": 128},  # better neighbours (label agreement 30.6 % -> 38.2 %)
    "support-1024": {"support_size": 1024},  # farther, more varied neighbours than the whole bank gives
}
SYNTHETIC_VARIANTS = ("lambda-0.25", "teacher-128px", "support-1024")  # the synthetic suite's question
VARIANT_METHOD, VARIANT_RECIPE = "clip-ping", "basic"


@dataclass(frozen=True)
class Run:
    method: str
    recipe: str
    seed: int
    variant: str = ""  # a VARIANTS key, or "" for the defaults
    init: str = "scratch"  # a key of the suite's inits

    @property
    def name(self) -> str:
        init = "" if self.init == "scratch" else self.init
        return "-".join(filter(None, (self.method, self.recipe, init, self.variant, f"s{self.seed}")))

    def config(self, args: argparse.Namespace, out: Path) -> TrainConfig:
        suite = SUITES[args.suite]
        asked = {"teacher_image_size": args.teacher_image_size} if args.teacher_image_size is not None else {}
        if args.logit_scale is not None:
            asked["logit_scale"] = args.logit_scale
        settings = {"student": args.student, **suite.settings, **suite.inits[self.init], **asked,
                    **VARIANTS.get(self.variant, {})}
        return TrainConfig(data=args.data, out=str(out), method=self.method, recipe=self.recipe,
                           epochs=args.epochs, seed=self.seed, batch_size=args.batch_size, workers=args.workers,
                           resume=(out / "checkpoint" / "trainer_state.json").exists(), **settings)


def planned_runs(args: argparse.Namespace) -> list[Run]:
    runs = []
    for seed in args.seeds:  # seed-major: a cut-off ablation still has every row at the first seeds
        runs += [Run(m, r, seed, "", i) for i in args.inits for m in args.methods for r in args.recipes]
        runs += [Run(VARIANT_METHOD, VARIANT_RECIPE, seed, v, i) for i in args.inits for v in args.variants]
    return runs


def result_path(run: Run, args: argparse.Namespace) -> Path:
    return Path(args.out) / run.name / "ablation-result.json"


def train_and_evaluate(run: Run, args: argparse.Namespace) -> dict:
    from clipping_edge.training.checkpoint import load_student
    from clipping_edge.training.data.pairs import read_pairs, resolve_split
    from clipping_edge.training.evaluate import evaluate
    from clipping_edge.training.locking import fully_locked
    from clipping_edge.training.trainer import train

    out = Path(args.out) / run.name
    train(run.config(args, out))
    model, tokenizer, meta = load_student(out / "checkpoint")
    locked = fully_locked(meta["train"])  # locked towers are evaluated from their feature cache
    metrics = {name: evaluate(model, tokenizer, read_pairs(resolve_split(data, "test"), limit=limit), locked=locked)
               for name, (data, limit) in SUITES[args.suite].evals.items()}
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    result = {"method": run.method, "recipe": run.recipe, "variant": run.variant, "init": run.init, "seed": run.seed,
              "metrics": metrics, "curve": [{k: r[k] for k in r if k == "epoch" or "R@1" in k or "top1" in k} for r in log],
              "samples_per_second": statistics.median(r["samples_per_second"] for r in log),
              "train_seconds": sum(r["seconds"] for r in log)}
    write_bytes_atomic(result_path(run, args), json.dumps(result, indent=2).encode())  # its presence marks the run done
    return result


def build_banks_once(runs: list[Run], args: argparse.Namespace) -> None:
    """Extract every feature bank the plan needs before parallel runs start, so that they only read them."""
    from clipping_edge.training.banks import build_banks
    from clipping_edge.training.data.pairs import read_pairs, resolve_split
    from clipping_edge.training.teachers import load_image_teacher, load_text_teacher

    configs = {(c.image_teacher, c.teacher_image_size, c.text_teacher)
               for c in (r.config(args, Path(args.out)) for r in runs if r.method != "clip")}
    pairs = read_pairs(resolve_split(args.data, "train"))
    for image_teacher, size, text_teacher in sorted(configs, key=str):
        build_banks(pairs, load_image_teacher(image_teacher, size), load_text_teacher(text_teacher), workers=args.workers)


def build_locked_caches_once(runs: list[Run], args: argparse.Namespace) -> None:
    """The locked image tower's features of every split the plan scores (the suite's test splits, training's final
    evaluation, each run's validation curve) and of the training split it trains on, before parallel runs start,
    on every core: a run that needs them at once with another waits while that one extracts them on its single
    thread (16 min of 224-px passes for the real suite's evaluations on a 2-core CPU with both cores, as long
    again for its 5 627 training pairs in a plan without CLIP-PING's banks)."""
    from dataclasses import asdict

    import torch

    from clipping_edge.training.config import student_config
    from clipping_edge.training.data.pairs import read_pairs, resolve_split
    from clipping_edge.training.evaluate import LockedCacheEncoder
    from clipping_edge.training.locking import fully_locked
    from clipping_edge.training.models import IMAGE_TOWERS
    from clipping_edge.training.run_setup import curve_sources, uses_locked_cache

    splits: dict[str, dict[str, tuple]] = {}  # student -> {what it is: (split, images used)}
    for config in (r.config(args, Path(args.out)) for r in runs):
        if not fully_locked(asdict(config))[0]:
            continue
        # the suite's test splits, training's own final evaluation (its data's whole test split), the val curve
        wanted = [(resolve_split(data, "test"), limit) for data, limit in SUITES[args.suite].evals.values()]
        wanted.append((resolve_split(config.data, "test"), None))
        if config.eval_every:
            wanted += [(source, config.eval_limit) for source in curve_sources(config).values()]
        if uses_locked_cache(config):
            wanted.append((resolve_split(config.data, "train"), config.limit))
        splits.setdefault(config.student, {}).update({repr(w): w for w in wanted})
    for student, wanted in splits.items():
        scfg = student_config(student)
        tower = IMAGE_TOWERS[scfg.vision.kind](scfg.vision, scfg.embed_dim).eval()
        # the cache is keyed by the trunk's weights, which the tower loads from the package: no text side needed
        encoder = LockedCacheEncoder(tower, None, None, scfg.vision.image_size, torch.device("cpu"), image_locked=True)
        for split, limit in wanted.values():
            encoder.encode_pairs(read_pairs(split, limit=limit))


def run_in_subprocess(run: Run, args: argparse.Namespace, threads: int) -> dict | None:
    """Train one run in its own interpreter so its thread count is its own (torch reads it at import).
    It gets this invocation's own options, so it trains with exactly the settings asked for here."""
    command = [sys.executable, "-m", "clipping_edge.benchmarks.ablation", *sys.argv[1:],
               "--single", run.method, run.recipe, str(run.seed), run.variant, run.init]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    # Beside the run's folder, not in it: the trainer writes only into a folder that is empty or already its run.
    Path(args.out).mkdir(parents=True, exist_ok=True)
    log_path = Path(args.out, f"{run.name}.stdout.txt")
    with open(log_path, "a") as log:
        exit_code = subprocess.run(command, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    if exit_code != 0:
        print(f"ablation: {run.name} failed (exit {exit_code}), the others go on; its output: {log_path}", flush=True)
        return None
    return json.loads(result_path(run, args).read_text())


def mean_std(values: list[float]) -> str:
    values = [100 * v for v in values]
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def table(results: list[dict], suite: Suite) -> str:
    seeds = sorted({r["seed"] for r in results})
    columns = suite.columns
    lines = ["| method | recipe | init | variant | seeds | " + " | ".join(c[2] for c in columns) + " | train min |",
             "|---" * (len(columns) + 6) + "|"]
    rows = [(m, r, i, "") for i in suite.inits for m in METHODS for r in RECIPES]
    rows += [(VARIANT_METHOD, VARIANT_RECIPE, i, v) for i in suite.inits for v in VARIANTS]
    for method, recipe, init, variant in rows:
        runs = [r for r in results
                if (r["method"], r["recipe"], r.get("init", "scratch"), r.get("variant", "")) == (method, recipe, init, variant)]
        if runs:
            cells = [mean_std([r["metrics"][ev][key] for r in runs]) for ev, key, _ in columns]
            cells.append(f"{statistics.mean(r['train_seconds'] for r in runs) / 60:.1f}")
            lines.append(f"| {method} | {recipe} | {init} | {variant or 'defaults'} | {len(runs)} | " + " | ".join(cells) + " |")
    note = f"(%, mean ± std over the seeds run, of {', '.join(map(str, seeds))}; train min: mean wall time of training)"
    return "\n".join(lines) + "\n\n" + note


def write_report(results: list[dict], args: argparse.Namespace) -> str:
    Path(args.out).mkdir(parents=True, exist_ok=True)
    report = f"{args.student}, {args.epochs} epochs, data {args.data}\n\n{table(results, SUITES[args.suite])}\n"
    Path(args.out, "ablation.md").write_text(report)
    Path(args.out, "ablation.json").write_text(json.dumps({"args": vars(args), "results": results}, indent=2))
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--suite", choices=list(SUITES), default="synthetic",
                        help="synthetic: vit-nano from scratch on synthetic + real pairs; real: effnet-minilm on real pairs")
    parser.add_argument("--data", help="default: the suite's")
    parser.add_argument("--student", help="default: the suite's")
    parser.add_argument("--epochs", type=int, help="default: the suite's")
    parser.add_argument("--inits", nargs="+", help="default: every initialisation the suite has")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--teacher-image-size", type=int, help="default: 64 px for synthetic, the teacher's own for real")
    parser.add_argument("--logit-scale", type=float, help="CLIP's logit scale held fixed for every run (default: learned)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--recipes", nargs="+", choices=RECIPES, default=list(RECIPES))
    parser.add_argument("--variants", nargs="*", choices=list(VARIANTS),
                        help=f"{VARIANT_METHOD} {VARIANT_RECIPE} with one setting changed (default: the synthetic suite's "
                             f"{' '.join(SYNTHETIC_VARIANTS)}, none for real; none: --variants)")
    parser.add_argument("--jobs", type=int, default=1, help="runs trained at once, each on cores/jobs threads")
    parser.add_argument("--workers", type=int, default=1, help="data-loader workers per run")
    parser.add_argument("--out", default="runs/ablation")
    parser.add_argument("--report", action="store_true", help="only tabulate the runs already finished under --out")
    parser.add_argument("--single", nargs=5, metavar=("METHOD", "RECIPE", "SEED", "VARIANT", "INIT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    suite = SUITES[args.suite]
    args.data, args.student = args.data or suite.data, args.student or suite.student
    args.epochs, args.inits = args.epochs or suite.epochs, args.inits or list(suite.inits)
    if args.suite == "synthetic" and args.teacher_image_size is None:
        args.teacher_image_size = 64
    if args.variants is None:
        args.variants = list(SYNTHETIC_VARIANTS) if args.suite == "synthetic" else []

    if args.single:
        method, recipe, seed, variant, init = args.single
        train_and_evaluate(Run(method, recipe, int(seed), variant, init), args)
        return
    runs = planned_runs(args)
    done = [r for r in runs if result_path(r, args).is_file()]
    results = [json.loads(result_path(r, args).read_text()) for r in done]
    todo = [r for r in runs if r not in done]
    if args.report or not todo:
        print(write_report(results, args))
        return
    print(f"ablation: {len(done)} runs finished, {len(todo)} to train, {args.jobs} at a time")
    build_banks_once(runs, args)
    build_locked_caches_once(todo, args)
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    with ThreadPoolExecutor(args.jobs) as pool:
        for result in pool.map(lambda run: run_in_subprocess(run, args, threads), todo):
            if result is None:
                continue
            results.append(result)
            write_report(results, args)
            print(f"ablation: {len(results)}/{len(runs)} runs finished", flush=True)
    print(write_report(results, args))


if __name__ == "__main__":
    main()
