"""The torch-free runtime on this machine: cold start, peak memory, end-to-end cost per image against
the image tower alone, and prototype search at 21 000 classes.

    python -m clipping_edge.benchmarks.runtime --bundle runs/exports/onnx-int8 --images DATA/test/images

Cold start and memory are measured in fresh subprocesses (nothing imported or cached before), so they
are what a device sees when the app starts. A table goes to stdout; --out DIR also keeps runtime.json and
the index it built (default: a temporary folder, removed).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# Runs in a fresh interpreter: import, open the bundle, load the image tower and a prototype index,
# classify one image; prints the phase times and the peak resident memory (Linux).
_COLD_START = """
import json, sys, time
t0 = time.perf_counter()
import clipping_edge
t1 = time.perf_counter()
model = clipping_edge.load(sys.argv[1], threads={threads})
model.image_tower
t2 = time.perf_counter()
clf = clipping_edge.ZeroShotClassifier.from_index(model, sys.argv[2])
t3 = time.perf_counter()
clf.classify([sys.argv[3]], top_k=5)
t4 = time.perf_counter()
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across fork + exec
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
rss_mb = int(hwm.split()[1]) / 1024
print(json.dumps({{"import_s": t1 - t0, "load_s": t2 - t1, "index_s": t3 - t2, "first_image_s": t4 - t3, "peak_rss_mb": rss_mb}}))
"""


COLD_START_PHASES = ("import_s", "load_s", "index_s", "first_image_s")  # what _COLD_START times, in order


def cold_start(bundle: Path, index: Path, image: Path, threads: int | None, repeats: int = 3) -> dict:
    """Median of `repeats` fresh processes. Cold start is the time to the first answer, as an app's user
    waits for it: import + open the bundle and load the image tower + load the index + classify the first
    image (each phase is reported too). The processes share an empty compile cache: the first one, as on
    an app's first launch, fills it (its cold start is `first_launch_s`); the median is of those after it."""
    runs = []
    command = [sys.executable, "-c", _COLD_START.format(threads=threads), str(bundle), str(index), str(image)]
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "CLIPPING_EDGE_CACHE": cache}
        for _ in range(repeats + 1):
            out = subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout
            runs.append(json.loads(out.strip().splitlines()[-1]))
    median = {k: float(np.median([r[k] for r in runs[1:]])) for k in runs[0]}
    median["cold_start_s"] = sum(median[phase] for phase in COLD_START_PHASES)
    median["first_launch_s"] = sum(runs[0][phase] for phase in COLD_START_PHASES)
    return median


def class_names(n: int) -> list[str]:
    colours = ["red", "green", "blue", "yellow", "purple", "orange", "black", "white", "grey", "pink"]
    shapes = ["circle", "square", "triangle", "star", "cross", "hexagon", "heart", "diamond", "ring", "arrow"]
    sizes = ["tiny", "small", "", "large", "huge", "striped", "dotted", "hollow", "shaded", "outlined"]
    names = [" ".join(w for w in (s, c, sh) if w) for s in sizes for c in colours for sh in shapes]
    return names[:n] if n <= len(names) else names + [f"object {i}" for i in range(n - len(names))]


def per_image_seconds(fn, items: list, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for item in items:
            fn(item)
        best = min(best, (time.perf_counter() - start) / len(items))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bundle", required=True)
    parser.add_argument("--images", required=True, help="a folder of test images")
    parser.add_argument("--classes", type=int, default=1000, help="classes in the cold-start / memory index")
    parser.add_argument("--search-classes", type=int, default=21000)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--n", type=int, default=200, help="images timed end to end")
    parser.add_argument("--out", help="keep runtime.json and the index here (default: nothing is kept)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        figures = measure(args, Path(args.out) if args.out else Path(scratch))
    width = max(map(len, figures))
    print("\n".join(f"{k:<{width}}  {v:.3f}" if isinstance(v, float) else f"{k:<{width}}  {v}" for k, v in figures.items()))
    if args.out:
        (Path(args.out) / "runtime.json").write_text(json.dumps(figures, indent=2))


def measure(args: argparse.Namespace, out: Path) -> dict:
    import clipping_edge
    from clipping_edge import PrototypeIndex, ZeroShotClassifier
    from clipping_edge.pipeline import expand_images
    from clipping_edge.preprocess import preprocess_batch

    out.mkdir(parents=True, exist_ok=True)
    model = clipping_edge.load(args.bundle, threads=args.threads)
    images = expand_images([args.images])[:args.n]
    names = class_names(args.classes)
    index_path = ZeroShotClassifier(model, names).save_index(out / f"classes-{args.classes}")
    figures = {"bundle": str(args.bundle), "target": model.manifest.target, "precision": model.manifest.precision,
               "classes": args.classes, **cold_start(Path(args.bundle), index_path, images[0], args.threads)}

    # End to end (decode, preprocess, image tower, prototype scores, softmax, top-k) against the image
    # tower alone on already-preprocessed pixels: one image per call as an app would call it, and a
    # folder streamed in batches of 32 (decoding overlapping inference) against the tower at batch 32.
    clf = ZeroShotClassifier.from_index(model, index_path)
    pixels = preprocess_batch(images, model.manifest.image_size)
    tower = model.image_tower
    figures["tower_b1_ms"] = 1e3 * per_image_seconds(lambda i: tower(pixels[i:i + 1]), list(range(len(images))))
    figures["classify_b1_ms"] = 1e3 * per_image_seconds(lambda p: clf.classify([p], top_k=5), images)
    figures["classify_b1_over_tower"] = figures["classify_b1_ms"] / figures["tower_b1_ms"]
    figures["tower_b32_ms"] = 1e3 * per_image_seconds(lambda _: model.encode_pixels(pixels, 32), [0]) / len(images)
    figures["stream_b32_ms"] = 1e3 * per_image_seconds(lambda _: sum(1 for _ in clf.classify_stream(images, top_k=5)), [0]) / len(images)
    figures["stream_b32_over_tower"] = figures["stream_b32_ms"] / figures["tower_b32_ms"]

    # Prototype search alone at a large class count (random unit prototypes: the cost does not depend on them).
    rng = np.random.default_rng(0)
    protos = rng.normal(size=(args.search_classes, model.manifest.embed_dim)).astype(np.float32)
    protos /= np.linalg.norm(protos, axis=1, keepdims=True)
    big = ZeroShotClassifier(model, index=PrototypeIndex.build(protos, [f"c{i}" for i in range(len(protos))],
                                                               model.manifest.fingerprint))
    queries = model.encode_pixels(pixels[:64])
    figures["search_classes"] = args.search_classes
    figures["search_ms_per_image"] = 1e3 * per_image_seconds(lambda q: big.classify_embeddings(q[None], top_k=5), list(queries))
    figures["search_ms_per_image_batch64"] = 1e3 * per_image_seconds(lambda q: big.classify_embeddings(q, top_k=5), [queries]) / 64

    return figures


if __name__ == "__main__":
    main()
