"""Every target x precision of the export table from one checkpoint: size, parity, conversion time.

    python -m clipping_edge.benchmarks.exports --checkpoint runs/demo/checkpoint --out runs/exports

Each cell is exported with --allow-degraded so a failing precision still shows its figures; the
table goes to stdout and OUT/exports.json. `--quantize auto` rows are added with --auto.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from clipping_edge.errors import ClippingEdgeError
from clipping_edge.manifest import size_mb
from clipping_edge.export.bundle import export_bundle
from clipping_edge.export.targets import AUTO, TARGETS


def export_cell(checkpoint: str, out: Path, target: str, precision: str, data: str | None) -> dict:
    try:
        bundle, parity = export_bundle(checkpoint, out / f"{target}-{precision}", target, precision, data,
                                       allow_degraded=True)
    except ClippingEdgeError as exc:
        return {"error": str(exc)}
    manifest = json.loads((bundle / "manifest.json").read_text())
    quantization = manifest["quantization"]
    return {
        "image_mb": size_mb(bundle / manifest["image_tower"]), "text_mb": size_mb(bundle / manifest["text_tower"]),
        "image_precision": quantization["image"]["precision"], "text_precision": quantization["text"]["precision"],
        "image_convert_s": quantization["image"]["convert_seconds"], "text_convert_s": quantization["text"]["convert_seconds"],
        **{k: parity.get(k) for k in ("image_cosine_min", "text_cosine_min", "zero_shot_agreement", "top1_drop_points",
                                      "passed", "failures", "checked_by", "export_seconds")},
    }


def markdown(results: dict[str, dict]) -> str:
    lines = ["| target | precision (image/text) | image MB | text MB | image cos | text cos | agreement | Δtop-1 pt | "
             "convert s (image/text) | gate | checked by |", "|---" * 11 + "|"]
    for name, r in results.items():
        if "error" in r:
            lines.append(f"| {name} | | | | | | | | | ❌ | {r['error']} |")
            continue
        checked = "runtime" if "runtime" in r["checked_by"] and "stand-in" not in r["checked_by"] else "stand-in (no macOS)"
        lines.append(f"| {name} | {r['image_precision']}/{r['text_precision']} | {r['image_mb']:.2f} | {r['text_mb']:.2f} | "
                     f"{r['image_cosine_min']:.5f} | {r['text_cosine_min']:.5f} | {r['zero_shot_agreement']:.1%} | "
                     f"{-r['top1_drop_points']:+.2f} | {r['image_convert_s']:.1f}/{r['text_convert_s']:.1f} | "
                     f"{'✅' if r['passed'] else '❎ ' + '; '.join(r['failures'])} | {checked} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data", help="labelled data to validate on (default: the checkpoint's training data)")
    parser.add_argument("--targets", nargs="+", default=list(TARGETS))
    parser.add_argument("--auto", action="store_true", help="also export each target with --quantize auto")
    parser.add_argument("--out", default="runs/exports")
    args = parser.parse_args()

    out = Path(args.out)
    results = {}
    for name in args.targets:
        precisions = [*TARGETS[name].precisions, *([AUTO] if args.auto else [])]
        for precision in precisions:
            results[f"{name} {precision}"] = export_cell(args.checkpoint, out, name, precision, args.data)
    print("\n" + markdown(results))
    out.mkdir(parents=True, exist_ok=True)
    (out / "exports.json").write_text(json.dumps({"args": vars(args), "results": results}, indent=2))


if __name__ == "__main__":
    main()
