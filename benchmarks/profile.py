"""Where an exported image tower spends its time: a per-operator profile from the runtime's own profiler.

    python -m clipping_edge.benchmarks.profile runs/exports/onnx-int8 runs/exports/openvino-int8 --threads 1

ONNX Runtime: its session profiler (time per node, summed by operator type). OpenVINO: the CPU plugin's
performance counters, by layer type and the kernel it chose (e.g. `jit_avx2_I8` shows int8 really
runs; `ref_any` marks a slow reference kernel). LiteRT: its Python interpreter exposes neither a per-op
profiler nor which operators XNNPACK took, so the table lists the model's operators beside the whole
call's time (LiteRT's `benchmark_model` tool gives the per-op times on a device). Core ML needs macOS.
Each call is one image at batch 1 (the app case), after warm-up; a Markdown table per bundle goes to
stdout, and --out keeps them as JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

import clipping_edge
from clipping_edge.atomic import write_bytes_atomic

WARMUP = 10


def _pixels(image_size: int) -> np.ndarray:
    """A photo-like input (smooth gradients plus noise) in the towers' [0, 1] NCHW layout."""
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 1, image_size, dtype=np.float32)
    base = np.stack([np.add.outer(ramp, ramp) / 2, np.outer(ramp, 1 - ramp), np.add.outer(1 - ramp, ramp) / 2])
    return np.clip(base + rng.normal(0, 0.05, base.shape).astype(np.float32), 0, 1)[None]


def _rows(times: dict[str, list[float]], nodes: dict[str, set[str]], calls: int, total_ms: float) -> list[dict]:
    """Per operator: its nodes, milliseconds per call and share of the summed operator time, largest first."""
    summed = sum(sum(v) for v in times.values()) or 1.0
    rows = [{"op": op, "nodes": len(nodes[op]), "ms": sum(v) / calls, "share": sum(v) / summed} for op, v in times.items()]
    rows.sort(key=lambda r: -r["ms"])
    return [{**r, "ms": round(r["ms"], 4), "share": round(r["share"], 4)} for r in rows] + [
        {"op": "(whole call, wall clock)", "nodes": None, "ms": round(total_ms, 4), "share": None}]


def _time_calls(run, calls: int) -> float:
    for _ in range(WARMUP):
        run()
    seconds = []
    for _ in range(calls):
        start = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - start)
    return 1000 * statistics.median(seconds)


def profile_onnx(path: Path, pixels: np.ndarray, threads: int, calls: int) -> list[dict]:
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        total_ms = _time_calls(lambda: session.run(None, {name: pixels}), calls)
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "ort")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        for _ in range(WARMUP + calls):
            session.run(None, {name: pixels})
        events = json.loads(Path(session.end_profiling()).read_text())
    durations: dict[str, list[float]] = defaultdict(list)
    operator: dict[str, str] = {}
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            durations[event["name"]].append(event["dur"] / 1000)
            operator[event["name"]] = event["args"]["op_name"]
    times: dict[str, list[float]] = defaultdict(list)
    nodes: dict[str, set[str]] = defaultdict(set)
    for node, node_ms in durations.items():
        times[operator[node]] += node_ms[-calls:]  # the first runs were the warm-up
        nodes[operator[node]].add(node)
    return _rows(times, nodes, calls, total_ms)


def profile_openvino(path: Path, pixels: np.ndarray, threads: int, calls: int) -> list[dict]:
    import openvino as ov

    config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": str(threads), "PERF_COUNT": "YES"}
    compiled = ov.Core().compile_model(str(path), "CPU", config)
    request = compiled.create_infer_request()
    total_ms = _time_calls(lambda: request.infer({0: pixels}), calls)
    times: dict[str, list[float]] = defaultdict(list)
    nodes: dict[str, set[str]] = defaultdict(set)
    for _ in range(calls):
        request.infer({0: pixels})
        for info in request.get_profiling_info():
            if info.status == info.Status.EXECUTED:
                key = f"{info.node_type} [{info.exec_type}]"
                times[key].append(info.real_time.total_seconds() * 1000)
                nodes[key].add(info.node_name)
    return _rows(times, nodes, calls, total_ms)


def profile_litert(path: Path, tower, threads: int, calls: int, pixels: np.ndarray) -> list[dict]:
    """tower: the bundle's own image tower (it feeds LiteRT's NHWC, possibly quantized input)."""
    from ai_edge_litert.interpreter import Interpreter

    total_ms = _time_calls(lambda: tower(pixels), calls)
    interpreter = Interpreter(model_path=str(path), num_threads=threads)
    interpreter.allocate_tensors()
    counts: dict[str, int] = defaultdict(int)
    for op in interpreter._get_ops_details():  # no public listing; this is what the analyzer prints
        counts[op["op_name"]] += 1
    return [{"op": op, "nodes": n, "ms": None, "share": None} for op, n in sorted(counts.items(), key=lambda c: -c[1])] + [
        {"op": "(whole call, wall clock)", "nodes": None, "ms": round(total_ms, 4), "share": None}]


def profile_bundle(bundle: Path, threads: int, calls: int) -> dict:
    model = clipping_edge.load(bundle, threads=threads)
    manifest = model.manifest
    path = model._file(manifest.image_tower)
    pixels = _pixels(manifest.image_size)
    if manifest.target == "onnx":
        rows = profile_onnx(path, pixels, threads, calls)
    elif manifest.target == "openvino":
        rows = profile_openvino(path, pixels, threads, calls)
    elif manifest.target == "tflite":
        rows = profile_litert(path, model.image_tower, threads, calls, pixels)
    else:
        rows = []  # Core ML's profiler (Xcode's performance report) needs macOS
    precision = manifest.quantization.get("image", {}).get("precision", manifest.precision)
    return {"bundle": str(bundle), "target": manifest.target, "precision": precision, "image_size": manifest.image_size,
            "threads": threads, "rows": rows}


def markdown(profile: dict, top: int) -> str:
    lines = [f"**{profile['target']} {profile['precision']}** ({profile['bundle']}, {profile['image_size']} px, "
             f"{profile['threads']} thread(s), batch 1)", "", "| operator | nodes | ms / call | share |", "|---|---|---|---|"]
    rows = profile["rows"]
    shown = [r for r in rows if r["nodes"] is not None][:top] + [r for r in rows if r["nodes"] is None]
    for r in shown:
        share = "" if r["share"] is None else f"{100 * r['share']:.1f} %"
        ms = "" if r["ms"] is None else f"{r['ms']:.3f}"
        lines.append(f"| {r['op']} | {'' if r['nodes'] is None else r['nodes']} | {ms} | {share} |")
    if not rows:
        lines.append("| (Core ML profiles need macOS) | | | |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("bundles", nargs="+", help="bundle folders")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--calls", type=int, default=50, help="profiled calls after the warm-up")
    parser.add_argument("--top", type=int, default=10, help="operators shown per bundle")
    parser.add_argument("--out", help="also write the profiles to OUT/profile.json")
    args = parser.parse_args()
    profiles = [profile_bundle(Path(b), args.threads, args.calls) for b in args.bundles]
    for profile in profiles:
        print(markdown(profile, args.top) + "\n")
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(Path(args.out) / "profile.json", json.dumps(profiles, indent=2).encode())


if __name__ == "__main__":
    main()
