"""Few-shot classes on real data: accuracy against the number of shots, per method, with a linear-probe ceiling.

For each bundle and each labelled set: k = 1, 2, 4, 8, 16 shots a class drawn from the training split (5 draws),
every few-shot method of the runtime (clipping_edge/fewshot.py, settings chosen by leave-one-out on the shots) and
`auto`, against zero-shot and against a logistic regression on the whole training pool of the same embeddings (the
ceiling). Everything runs through the torch-free runtime: the bundle embeds, numpy fits. Writes few_shot.json,
few_shot.md (a table) and few_shot.png (accuracy vs shots).

    python -m clipping_edge.benchmarks.few_shot --bundles runs/demo/bundle runs/real-bundle \
        --data runs/data/emoji runs/data/openclipart runs/data/fashion-mnist --out runs/few-shot
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from clipping_edge import load
from clipping_edge.classifier import class_prototypes, softmax
from clipping_edge.fewshot import AUTO, METHODS, Shots, choose_method, fit

SHOTS = (1, 2, 4, 8, 16)


def embed_split(model, data: str, split: str, per_class: int | None, limit: int, seed: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(embeddings, class indices, classes) of a split's labelled pairs: at most `per_class` a class (a random
    subset), at most `limit` in all."""
    from clipping_edge.training.data.pairs import read_pairs, resolve_split

    pairs = read_pairs(resolve_split(data, split))
    task = read_pairs(resolve_split(data, "test")).zero_shot
    classes = list(task.classes)
    rng = np.random.default_rng(seed)
    by_class: dict[int, list] = {}
    for pair in pairs.pairs:
        if pair.label in classes:
            by_class.setdefault(classes.index(pair.label), []).append(pair)
    chosen = []
    for c, members in sorted(by_class.items()):
        take = len(members) if per_class is None else min(per_class, len(members))
        chosen += [(c, members[i]) for i in rng.choice(len(members), take, replace=False)]
    chosen = [chosen[i] for i in np.sort(rng.permutation(len(chosen))[:limit])]
    labels = np.asarray([c for c, _ in chosen])
    embeddings = model.encode_image([p.source() for _, p in chosen])
    return embeddings, labels, classes


def draw(labels: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k positions of each class (fewer where a class has fewer)."""
    picks = [rng.choice(np.flatnonzero(labels == c), min(k, int((labels == c).sum())), replace=False)
             for c in np.unique(labels)]
    return np.concatenate(picks)


def cached(folder: Path, name: str, compute) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """A split's embeddings, kept in the output folder: a rerun (another method, a crash) does not embed again."""
    path = folder / f"{name}.npz"
    if path.is_file():
        data = np.load(path)
        return data["x"], data["y"], [str(c) for c in data["classes"]]
    x, y, classes = compute()
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(path, x=x, y=y, classes=np.asarray(classes))
    return x, y, classes


def run_set(model, data: str, shots: tuple[int, ...], draws: int, pool_per_class: int, pool_limit: int,
            test_limit: int, probe_limit: int, cache: Path) -> dict:
    from clipping_edge.training.evaluate import linear_probe

    start = time.perf_counter()
    pool_x, pool_y, classes = cached(cache, "pool", lambda: embed_split(model, data, "train", pool_per_class, pool_limit, seed=0))
    test_x, test_y, _ = cached(cache, "test", lambda: embed_split(model, data, "test", None, test_limit, seed=1))
    embed_seconds = round(time.perf_counter() - start, 1)
    from clipping_edge.training.data.pairs import read_pairs, resolve_split

    task = read_pairs(resolve_split(data, "test")).zero_shot
    text = class_prototypes(model, classes, task.templates, task.synonyms)
    scale = model.logit_scale
    zero_shot = float((softmax(scale * test_x @ text.T).argmax(1) == test_y).mean())
    probe = linear_probe(pool_x[:probe_limit], pool_y[:probe_limit], test_x, test_y)
    rows: dict[str, dict[int, list[float]]] = {name: {k: [] for k in shots} for name in (*METHODS, AUTO)}
    chosen: dict[int, list[str]] = {k: [] for k in shots}
    fit_seconds: dict[int, list[float]] = {k: [] for k in shots}
    for k in shots:
        for d in range(draws):
            picked = draw(pool_y, k, np.random.default_rng(1000 * k + d))
            data_shots = Shots(text, np.ones(len(classes), bool), pool_x[picked], pool_y[picked])
            t = time.perf_counter()
            record = choose_method(AUTO, data_shots, scale)
            fit_seconds[k].append(time.perf_counter() - t)
            for name, tried in record["tried"].items():
                head = fit(name, data_shots, scale, tried["settings"])
                rows[name][k].append(float((head.logits(test_x).argmax(1) == test_y).mean()))
            rows[AUTO][k].append(rows[record["method"]][k][-1])
            chosen[k].append(record["method"])
    print(f"  {Path(data).name}: {len(pool_x)} pool / {len(test_x)} test images, embedded in {embed_seconds:.0f} s, "
          f"all in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    return {"data": data, "classes": len(classes), "pool": len(pool_x), "test": len(test_x), "zero_shot": zero_shot,
            "linear_probe": probe.top1, "probe_train": probe.n_train, "embed_seconds": embed_seconds,
            "methods": {name: {str(k): [float(np.mean(v)), float(np.std(v))] for k, v in by_k.items()} for name, by_k in rows.items()},
            "auto_chose": {str(k): v for k, v in chosen.items()},
            "choose_seconds": {str(k): float(np.mean(v)) for k, v in fit_seconds.items()}}


def classify_cost(model, data: str, shots_per_class: int = 16, images: int = 24, repeats: int = 3) -> dict:
    """Milliseconds per image of `classify` (decode, preprocess, image tower, scores) with a zero-shot index and with a
    few-shot index of `shots_per_class` shots a class (Tip-Adapter, the head with the most work per image), in
    interleaved rounds; the median round each."""
    from clipping_edge.classifier import ZeroShotClassifier
    from clipping_edge.training.data.pairs import read_pairs, resolve_split

    test = read_pairs(resolve_split(data, "test"))
    task = test.zero_shot
    train = read_pairs(resolve_split(data, "train"))
    shots: dict[str, list] = {}
    for pair in train.pairs:
        if pair.label in task.classes and len(shots.setdefault(pair.label, [])) < shots_per_class:
            shots[pair.label].append(pair.source())
    queries = [p.source() for p in test.pairs[:images]]
    rows = {"zero-shot": ZeroShotClassifier(model, task.classes, task.templates, task.synonyms),
            "few-shot tip": ZeroShotClassifier(model, task.classes, task.templates, task.synonyms, shots=shots, fewshot="tip")}
    times: dict[str, list[float]] = {name: [] for name in rows}
    for name, classifier in rows.items():
        classifier.classify(queries[:2])  # warm-up
    for _ in range(repeats):
        for name, classifier in rows.items():
            start = time.perf_counter()
            for query in queries:
                classifier.classify(query)
            times[name].append(1000 * (time.perf_counter() - start) / len(queries))
    out = {name: float(np.median(t)) for name, t in times.items()}
    out["ratio"] = out["few-shot tip"] / out["zero-shot"]
    out["shots"] = int(len(rows["few-shot tip"].index.shot_labels))
    return out


def table(results: list[dict], shots: tuple[int, ...]) -> str:
    lines = ["| bundle | set | zero-shot | method | " + " | ".join(f"{k} shot{'s' * (k > 1)}" for k in shots)
             + " | linear probe (ceiling) |", "|" + "---|" * (len(shots) + 5)]
    for r in results:
        for name in (*METHODS, AUTO):
            cells = [f"{100 * m:.1f} ± {100 * s:.1f}" for m, s in (r["methods"][name][str(k)] for k in shots)]
            lines.append(f"| {r['bundle']} | {Path(r['data']).name} ({r['classes']} classes) | {100 * r['zero_shot']:.1f} | "
                         f"{name} | " + " | ".join(cells) + f" | {100 * r['linear_probe']:.1f} |")
    return "\n".join(lines)


def plot(results: list[dict], shots: tuple[int, ...], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(4.2 * len(results), 3.6), squeeze=False)
    for ax, r in zip(axes[0], results):
        for name in (*METHODS, AUTO):
            means = [100 * r["methods"][name][str(k)][0] for k in shots]
            stds = [100 * r["methods"][name][str(k)][1] for k in shots]
            ax.errorbar(shots, means, yerr=stds, marker="o", capsize=2, label=name, lw=2.2 if name == AUTO else 1)
        ax.axhline(100 * r["zero_shot"], ls="--", c="grey", label="zero-shot")
        ax.axhline(100 * r["linear_probe"], ls=":", c="black", label="linear probe")
        ax.set_xscale("log", base=2)
        ax.set_xticks(shots, [str(k) for k in shots])
        ax.set_title(f"{r['bundle']}: {Path(r['data']).name}", fontsize=9)
        ax.set_xlabel("shots per class")
        ax.set_ylabel("top-1 (%)")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundles", nargs="+", required=True, help="bundle folders (any target the runtime runs)")
    parser.add_argument("--data", nargs="+", required=True, help="labelled sets with train and test splits")
    parser.add_argument("--shots", nargs="+", type=int, default=list(SHOTS))
    parser.add_argument("--draws", type=int, default=5, help="random draws of the shots per k (mean ± std)")
    parser.add_argument("--pool-per-class", type=int, default=200, help="training images a class to draw shots from "
                                                                        "and to fit the linear probe on")
    parser.add_argument("--pool-limit", type=int, default=5000)
    parser.add_argument("--test-limit", type=int, default=2000)
    parser.add_argument("--probe-limit", type=int, default=5000)
    parser.add_argument("--out", default="runs/few-shot")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    shots, results = tuple(args.shots), []
    costs = {}
    for bundle in args.bundles:
        model = load(bundle)
        print(f"{bundle} ({model.manifest.model_name}):", file=sys.stderr)
        costs[Path(bundle).name] = classify_cost(model, args.data[0])
        print(f"  classify per image: {costs[Path(bundle).name]}", file=sys.stderr)
        for data in args.data:
            cache = out / "embeddings" / f"{Path(bundle).name}-{Path(data).name}"
            result = run_set(model, data, shots, args.draws, args.pool_per_class, args.pool_limit, args.test_limit,
                             args.probe_limit, cache)
            results.append({"bundle": Path(bundle).name, **result})
    (out / "few_shot.json").write_text(json.dumps({"results": results, "classify_ms": costs}, indent=2))
    markdown = table(results, shots) + "\n\nclassify, ms per image (median of 3 rounds, first --data set's test images):\n" + \
        "\n".join(f"- {name}: zero-shot {c['zero-shot']:.1f}, few-shot tip with {c['shots']} shots {c['few-shot tip']:.1f} "
                  f"({c['ratio']:.2f}x)" for name, c in costs.items())
    (out / "few_shot.md").write_text(markdown + "\n")
    plot(results, shots, out / "few_shot.png")
    print(markdown)
    print(f"wrote {out}/few_shot.json, few_shot.md, few_shot.png")


if __name__ == "__main__":
    main()
