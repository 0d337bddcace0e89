"""Every target x precision exported from the tiny student and validated in its real runtime
(ONNX Runtime, OpenVINO, LiteRT; Core ML structurally and by simulation off macOS)."""

import json
from pathlib import Path

import pytest
import torch

import clipping_edge
from export.bundle import export_bundle, size_mb
from export.targets import TARGETS
from export.validate import THRESHOLDS, family
from training.checkpoint import load_student

CASES = [(t.name, p) for t in TARGETS.values() for p in t.precisions]
# Known to destroy the image tower here (cosine < 0): it must be refused, never shipped silently.
MUST_BE_REFUSED = {("tflite", "int8-static")}


@pytest.mark.parametrize("target,precision", CASES)
def test_export_is_validated_and_gated(target: str, precision: str, tiny_checkpoint: Path, small_data: Path,
                                       tmp_path: Path):
    tgt = TARGETS[target]
    bundle, parity = export_bundle(tiny_checkpoint, tmp_path / "bundle", target, precision, str(small_data),
                                   allow_degraded=True)
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["target"] == target and manifest["precision"] == precision
    image_precision, text_precision = (manifest["quantization"][k]["precision"] for k in ("image", "text"))
    assert image_precision == precision and text_precision == tgt.tower_precision("text", precision)
    if tgt.precisions[precision].calibrated:
        assert manifest["quantization"]["calibration"]["samples"] > 0
    assert size_mb(bundle / manifest["image_tower"]) > 0.05
    if (target, precision) in MUST_BE_REFUSED:
        assert not parity["passed"] and any("image cosine" in f for f in parity["failures"])
        with pytest.raises(clipping_edge.ClippingEdgeError, match="failed validation"):
            export_bundle(tiny_checkpoint, tmp_path / "refused", target, precision, str(small_data))
        assert not (tmp_path / "refused").exists()
        return
    # Each tower meets its precision's cosine gate; float precisions also hold the zero-shot gates.
    assert parity["image_cosine_min"] >= THRESHOLDS[family(image_precision)].min_cosine
    assert parity["text_cosine_min"] >= THRESHOLDS[family(text_precision)].min_cosine
    if family(precision) != "int8":
        assert parity["passed"], parity["failures"]
    if not tgt.runs_here():
        assert "simulation" in parity["checked_by"]
        return
    # Independently of the validator: the runtime's text embeddings against the student's.
    model = clipping_edge.load(bundle)
    student, tokenizer, _ = load_student(tiny_checkpoint)
    texts = ["a red circle on the left", "a small dotted blue box", "a star", "a green cross above a box"] * 3
    with torch.no_grad():
        expected = student.text(torch.from_numpy(tokenizer(texts))).numpy()
    cosine = (model.encode_text(texts) * expected).sum(1)
    assert cosine.min() >= THRESHOLDS[family(text_precision)].min_cosine
