"""App-ready classifiers (`export --labels`): one graph image -> class probabilities per target, its labels
where the format's own tooling reads them, checked against the two-tower path by real consumers: ONNX
Runtime on the .onnx and its ORT-format copy, OpenVINO, LiteRT and MediaPipe's ImageClassifier on the
.tflite; Core ML's package structurally (what Vision reads), as it cannot run here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from clipping_edge.classifier import ZeroShotClassifier
from clipping_edge.model import load
from clipping_edge.preprocess import preprocess_image

LABELS = ["red circle", "red square", "blue star", "green triangle", "blue circle", "yellow cross"]


def _export(checkpoint: Path, data: Path, out: Path, target: str, *extra: str) -> dict:
    run = subprocess.run([sys.executable, "-m", "clipping_edge.cli", "export", "--checkpoint", str(checkpoint), "--data",
                          str(data), "--out", str(out), "--target", target, *extra, "--json"],
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return json.loads((out / "manifest.json").read_text())


def _test_images(data: Path, n: int = 24) -> list[Path]:
    return sorted((data / "test" / "images").iterdir())[:n]


def _two_tower_top1(bundle: Path, images: list[Path]) -> list[str]:
    classifier = ZeroShotClassifier(load(bundle), LABELS, index_dtype="f32")
    return [preds[0].label for preds in classifier.classify([str(p) for p in images], top_k=1)]


def test_onnx_classifier_with_ort_copy_metadata_and_mobile_verdict(tiny_checkpoint: Path, small_data: Path, tmp_path: Path):
    import onnx
    import onnxruntime as ort

    manifest = _export(tiny_checkpoint, small_data, tmp_path / "b", "onnx", "--labels", ",".join(LABELS))
    record = manifest["classifier"]
    assert record["parity"]["passed"] and record["parity"]["images"] > 100, record["parity"]
    assert set(record["parity"]["files"]) == {"classifier.onnx", "classifier.ort"}
    assert record["input"]["shape"] == [1, 3, 32, 32] and record["labels"] == LABELS
    assert {"classifier.onnx", "classifier.ort"} <= set(manifest["files"])
    # The labels travel inside the file, and every shape is fixed.
    model = onnx.load(str(tmp_path / "b" / "classifier.onnx"))
    assert json.loads({p.key: p.value for p in model.metadata_props}["labels"]) == LABELS
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, 32, 32]
    # The rewritten graph has none of the ops ORT Mobile's providers refused in the towers.
    ops = {n.op_type for n in model.graph.node}
    assert not ops & {"ReduceL2", "LayerNormalization", "Expand"}, ops
    assert record["mobile_usability"]["CoreML MLProgram"]["verdict"] == "YES", record["mobile_usability"]
    assert record["mobile_usability"]["NNAPI"]["verdict"] in ("YES", "MAYBE"), record["mobile_usability"]
    # ORT Mobile's file, run by onnxruntime, answers like the two-tower runtime path.
    images = _test_images(small_data)
    session = ort.InferenceSession(str(tmp_path / "b" / "classifier.ort"), providers=["CPUExecutionProvider"])
    fused = [LABELS[int(session.run(None, {"pixels": preprocess_image(p, 32)[None]})[0].argmax())] for p in images]
    assert fused == _two_tower_top1(tmp_path / "b", images)
    # The runtime still verifies the bundle (the classifier files are hashed like every other file).
    assert subprocess.run([sys.executable, "-m", "clipping_edge.cli", "verify", str(tmp_path / "b")],
                          capture_output=True).returncode == 0


def test_openvino_classifier_labels_in_rt_info(tiny_checkpoint: Path, small_data: Path, tmp_path: Path):
    import openvino as ov

    manifest = _export(tiny_checkpoint, small_data, tmp_path / "b", "openvino", "--labels", ",".join(LABELS))
    assert manifest["classifier"]["parity"]["passed"], manifest["classifier"]["parity"]
    model = ov.Core().read_model(str(tmp_path / "b" / "classifier.xml"))
    assert json.loads(model.get_rt_info(["clipping_edge", "labels"]).value) == LABELS
    assert list(model.inputs[0].get_partial_shape().to_shape()) == [1, 3, 32, 32]


def test_tflite_classifier_read_by_mediapipe(tiny_checkpoint: Path, small_data: Path, tmp_path: Path):
    import mediapipe as mp
    from mediapipe.tasks.python import vision
    from mediapipe.tasks.python.core.base_options import BaseOptions

    manifest = _export(tiny_checkpoint, small_data, tmp_path / "b", "tflite", "--labels", ",".join(LABELS))
    record = manifest["classifier"]
    assert record["parity"]["passed"] and record["input"]["shape"] == [1, 32, 32, 3], record
    images = _test_images(small_data)
    options = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=str(tmp_path / "b" / "classifier.tflite")),
                                            max_results=len(LABELS))
    with vision.ImageClassifier.create_from_options(options) as classifier:
        found = []
        for path in images:
            # Already the model's size: MediaPipe's own resize is then a no-op and the pixels are ours.
            pixels = np.ascontiguousarray((preprocess_image(path, 32).transpose(1, 2, 0) * 255).round().astype(np.uint8))
            categories = classifier.classify(mp.Image(image_format=mp.ImageFormat.SRGB, data=pixels)).classifications[0].categories
            assert {c.category_name for c in categories} == set(LABELS)  # the labels come from the model's metadata
            found.append(categories[0].category_name)
    assert found == _two_tower_top1(tmp_path / "b", images)


def test_coreml_classifier_structure(tiny_checkpoint: Path, small_data: Path, tmp_path: Path):
    import coremltools as ct

    from clipping_edge.export.classifier import ClassifierJob, _coreml_classifier_problems
    from clipping_edge.export.targets import TowerJob

    manifest = _export(tiny_checkpoint, small_data, tmp_path / "b", "coreml", "--labels", ",".join(LABELS))
    record = manifest["classifier"]
    assert record["parity"]["passed"] and record["structure"] == [], record
    assert "cannot run" in record["parity"]["checked_by"]
    spec = ct.models.MLModel(str(tmp_path / "b" / "classifier.mlpackage"), skip_model_load=True).get_spec()
    assert spec.description.input[0].type.WhichOneof("Type") == "imageType"
    assert spec.description.predictedFeatureName == "label"
    # The check can fail: the image tower (a tensor input, no classifier config) is refused on both counts.
    class Module:
        image_size = 32
    job = ClassifierJob(TowerJob("image", Module(), "pixels", None, tmp_path / "b" / "image.mlpackage", "fp16"), LABELS, {})
    problems = _coreml_classifier_problems(job)
    assert any("not an RGB" in p for p in problems) and any("classifier config" in p for p in problems)


def test_classifier_from_a_prototype_index(tiny_checkpoint: Path, small_data: Path, tiny_bundle: Path, tmp_path: Path):
    index = tmp_path / "labels.usearch"
    built = subprocess.run([sys.executable, "-m", "clipping_edge.cli", "index", "build", "--bundle", str(tiny_bundle),
                            "--labels", ",".join(LABELS[:4]), "--out", str(index), "--dtype", "f32"], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    manifest = _export(tiny_checkpoint, small_data, tmp_path / "b", "onnx", "--labels-index", str(index))
    assert manifest["classifier"]["labels"] == LABELS[:4] and manifest["classifier"]["parity"]["passed"]


def test_repeated_labels_are_one_error_line(tiny_checkpoint: Path, small_data: Path, tmp_path: Path):
    run = subprocess.run([sys.executable, "-m", "clipping_edge.cli", "export", "--checkpoint", str(tiny_checkpoint), "--data",
                          str(small_data), "--out", str(tmp_path / "b"), "--labels", "cat,dog,cat"], capture_output=True, text=True)
    assert run.returncode == 2 and "repeats 'cat'" in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "b").exists()


def test_few_shot_index_bakes_into_the_onnx_classifier(tiny_checkpoint: Path, tiny_bundle: Path, small_data: Path,
                                                      tmp_path: Path):
    """A few-shot index's linear head (prototype mixing or LDA) becomes the classifier's constants and answers as the
    runtime's classifier with that index does; Tip-Adapter's cache is refused in one line."""
    images = _test_images(small_data, 40)
    shots = {label: [str(p) for p in images[i::6][:3]] for i, label in enumerate(LABELS)}
    for method in ("mix", "lda"):
        classifier = ZeroShotClassifier(load(tiny_bundle), LABELS, shots=shots, fewshot=method, index_dtype="f32")
        index = classifier.save_index(tmp_path / f"{method}.usearch")
        manifest = _export(tiny_checkpoint, small_data, tmp_path / method, "onnx", "--labels-index", str(index))
        record = manifest["classifier"]
        assert record["parity"]["passed"] and record["fewshot"]["method"] == method, record
        import onnxruntime as ort

        session = ort.InferenceSession(str(tmp_path / method / "classifier.onnx"), providers=["CPUExecutionProvider"])
        query = images[30:40]
        graph = np.concatenate([session.run(None, {"pixels": preprocess_image(str(p), 32)[None]})[0] for p in query])
        runtime = classifier.probabilities(load(tiny_bundle).encode_image([str(p) for p in query]))
        np.testing.assert_allclose(graph, runtime, atol=2e-3)
    tip = ZeroShotClassifier(load(tiny_bundle), LABELS, shots=shots, fewshot="tip").save_index(tmp_path / "tip.usearch")
    run = subprocess.run([sys.executable, "-m", "clipping_edge.cli", "export", "--checkpoint", str(tiny_checkpoint), "--data",
                          str(small_data), "--out", str(tmp_path / "tip"), "--labels-index", str(tip)],
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 2 and run.stderr.count("error:") == 1 and "--fewshot mix" in run.stderr, run.stderr


def test_the_default_students_onnx_classifier_runs_whole_on_nnapi_and_core_ml(tmp_path: Path):
    """The demo's student reads ImageNet-head probabilities through a top-k mask (ReduceMax, Where, a comparison)
    and pads its stem with a non-zero value: all rewritten into ops both mobile providers take, results unchanged.
    Its projection is untrained here: what is checked is the graph, which training does not change."""
    import onnxruntime as ort
    import torch

    from clipping_edge.export.classifier import HEAD_NODE, FusedClassifier, _onnx_mobile_verdict, for_mobile_providers
    from clipping_edge.export.targets import TowerJob
    from clipping_edge.export.to_onnx import export_onnx
    from clipping_edge.export.towers import ImageTower
    from clipping_edge.training.config import student_config
    from clipping_edge.training.models import Student

    cfg = student_config("effnet-head-minilm")
    cfg.text.vocab_size = 30522  # MiniLM's own vocabulary, which training gives it
    tower = ImageTower(Student(cfg).eval())
    prototypes = np.random.default_rng(0).standard_normal((10, cfg.embed_dim)).astype(np.float32)
    fused = FusedClassifier(tower, prototypes / np.linalg.norm(prototypes, axis=1, keepdims=True), 50.0, tower.image_size).eval()
    path = tmp_path / "classifier.onnx"
    export_onnx(TowerJob("image", fused, "pixels", fused.example, path, "fp32"), fixed_batch=1, output_name="scores",
                keep_float=[HEAD_NODE], rewrite=lambda fp32: for_mobile_providers(fp32, tuple(fused.prototypes_t.shape)))
    verdicts = _onnx_mobile_verdict(path)
    for provider in ("NNAPI", "CoreML MLProgram"):
        assert verdicts[provider]["verdict"] == "YES" and not verdicts[provider]["unsupported_ops"], verdicts
        assert verdicts[provider]["partitions"] == 1, verdicts
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for seed in range(3):
        pixels = torch.rand(1, 3, tower.image_size, tower.image_size, generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            expected = fused(pixels).numpy()
        np.testing.assert_allclose(session.run(None, {"pixels": pixels.numpy()})[0], expected, atol=1e-5)
