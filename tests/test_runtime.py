"""The torch-free runtime: import hygiene, preprocessing, tokenizer, prototype index, scores vs PyTorch."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import clipping_edge
from clipping_edge import ClippingEdgeError, PrototypeIndex, ZeroShotClassifier
from clipping_edge.preprocess import load_image, preprocess_batch
from clipping_edge.training.checkpoint import load_student
from clipping_edge.training.data.pairs import read_pairs
from clipping_edge.training.data.transforms import eval_transform


def test_import_pulls_no_torch_or_converters():
    code = ("import sys, clipping_edge; from clipping_edge import cli; cli.build_parser(); "
            "bad = {'torch', 'transformers', 'onnx', 'openvino', 'coremltools', 'jax'} & set(sys.modules); assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_openvino_backend_skips_the_converter_until_it_is_needed():
    # The converter and telemetry that `import openvino` pulls in cost ~0.2 s of a cold start; a process
    # that loaded a bundle first must still convert models when it goes on to export.
    code = ("import sys, clipping_edge.backends.openvino, openvino, torch; "
            "assert 'openvino.tools.ovc' not in sys.modules and 'openvino_telemetry' not in sys.modules; "
            "m = openvino.convert_model(torch.nn.Linear(3, 2), example_input=torch.zeros(1, 3)); "
            "assert isinstance(m, openvino.Model) and 'openvino.tools.ovc' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_runtime_preprocessing_equals_training_eval_transform(small_data: Path):
    image = Image.open(next((small_data / "test" / "images").iterdir()))
    big = image.resize((77, 50))  # non-square: resize + centre crop both matter
    train_side = eval_transform(24)(load_image(big)).numpy()
    runtime_side = preprocess_batch([big], 24)[0]
    assert np.array_equal(train_side, runtime_side)


def test_image_modes_all_become_rgb(tmp_path: Path):
    rgba = Image.new("RGBA", (20, 10), (255, 0, 0, 0))  # fully transparent red -> white
    cmyk = Image.new("CMYK", (10, 10), (0, 255, 255, 0))
    palette = Image.new("P", (10, 10))
    for image in (rgba, cmyk, palette, Image.new("L", (10, 10), 128)):
        out = load_image(image)
        assert out.mode == "RGB"
    assert load_image(rgba).getpixel((0, 0)) == (255, 255, 255)
    # 16- and 32-bit samples have no one 8-bit reading (tests/test_safety.py): refused, never guessed


def test_exif_orientation_is_applied(tmp_path: Path):
    image = Image.new("RGB", (30, 10), (0, 0, 255))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif)
    assert load_image(path).size == (10, 30)


def test_bundle_scores_match_pytorch(tiny_bundle: Path, tiny_checkpoint: Path, small_data: Path):
    model = clipping_edge.load(tiny_bundle)
    test = read_pairs(small_data / "test")
    task = test.zero_shot
    images = [p.image for p in test.pairs[:16]]
    for dtype, tolerance in (("f32", 1e-4), ("f16", 2e-2)):
        clf = ZeroShotClassifier(model, task.classes, task.templates, index_dtype=dtype)
        runtime = clf.probabilities(model.encode_image(images))
        student, tokenizer, _ = load_student(tiny_checkpoint)
        with torch.no_grad():
            ids = torch.from_numpy(tokenizer([t.format(c) for c in task.classes for t in task.templates]))
            text = student.text(ids).reshape(len(task.classes), len(task.templates), -1).mean(1)
            text = torch.nn.functional.normalize(text, dim=-1)
            pixels = torch.from_numpy(preprocess_batch(images, student.config.vision.image_size))
            expected = (student.logit_scale.exp().clamp(max=100) * student.visual(pixels) @ text.T).softmax(-1).numpy()
        assert np.abs(runtime - expected).max() < tolerance, dtype
        top = clf.classify(images[:2], top_k=3)
        assert [p.label for p in top[0]] == [task.classes[i] for i in np.argsort(-expected[0])[:3]]
        assert top[0][0].score == pytest.approx(expected[0].max(), abs=tolerance)


def test_index_round_trip_view_and_refusals(tiny_bundle: Path, tmp_path: Path):
    model = clipping_edge.load(tiny_bundle)
    labels = ["red circle", "blue square", "green star"]
    clf = ZeroShotClassifier(model, labels)
    path = clf.save_index(tmp_path / "protos")
    assert path.suffix == ".usearch" and path.with_name("protos.usearch.json").is_file()
    query = model.encode_text(["a photo of a red circle."])
    for view in (False, True):
        loaded = ZeroShotClassifier.from_index(model, path, view=view)
        assert loaded.labels == labels
        np.testing.assert_allclose(loaded.probabilities(query), clf.probabilities(query), atol=1e-6)

    other = PrototypeIndex.load(path)
    other.fingerprint = "0" * 16
    other_path = other.save(tmp_path / "other")
    with pytest.raises(ClippingEdgeError, match="another model"):
        ZeroShotClassifier.from_index(model, other_path)

    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ClippingEdgeError, match="checksum"):
        ZeroShotClassifier.from_index(model, path)

    junk = tmp_path / "junk.usearch"
    junk.write_bytes(b"not an index at all")
    meta = json.loads(path.with_name(path.name + ".json").read_text())
    from clipping_edge.index import _checksum

    meta["sha256"] = _checksum(junk, meta)  # a forged sidecar that matches: usearch itself must refuse the file
    junk.with_name(junk.name + ".json").write_text(json.dumps(meta))
    with pytest.raises(ClippingEdgeError, match="not a usearch index"):
        ZeroShotClassifier.from_index(model, junk)


def test_labels_must_be_non_empty_and_unique(tiny_bundle: Path):
    model = clipping_edge.load(tiny_bundle)
    with pytest.raises(ClippingEdgeError, match="empty"):
        ZeroShotClassifier(model, [])
    with pytest.raises(ClippingEdgeError, match="repeats 'cat'"):
        ZeroShotClassifier(model, ["cat", "dog", "cat"])


def test_long_text_is_truncated_with_a_warning(tiny_bundle: Path):
    model = clipping_edge.load(tiny_bundle)
    with pytest.warns(UserWarning, match="truncated"):
        ids = model.tokenizer(["word " * 100])
    assert ids.shape == (1, model.manifest.context_length)
    assert ids[0, -1] == model.tokenizer.eot_id


def test_bundle_refusals(tiny_bundle: Path, tmp_path: Path):
    bad = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bad)
    manifest = json.loads((bad / "manifest.json").read_text())

    (bad / "manifest.json").write_text(json.dumps({**manifest, "format_version": 99}))
    with pytest.raises(ClippingEdgeError, match="format version 99"):
        clipping_edge.load(bad)
    (bad / "manifest.json").write_text(json.dumps({**manifest, "image_tower": "../../etc/passwd"}))
    with pytest.raises(ClippingEdgeError, match="outside the bundle"):
        clipping_edge.load(bad)
    (bad / "manifest.json").write_text(json.dumps(manifest))
    (bad / manifest["image_tower"]).unlink()
    with pytest.raises(ClippingEdgeError, match="missing"):
        clipping_edge.load(bad)
    with pytest.raises(ClippingEdgeError, match="does not exist"):
        clipping_edge.load(tmp_path / "nowhere")


def test_bad_images_get_clear_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    with pytest.raises(ClippingEdgeError, match="does not exist"):
        load_image(tmp_path / "missing.png")
    (tmp_path / "text.png").write_text("hello")
    with pytest.raises(ClippingEdgeError, match="not a readable image"):
        load_image(tmp_path / "text.png")
    Image.new("RGB", (64, 64), (1, 2, 3)).save(tmp_path / "ok.jpg")
    (tmp_path / "cut.jpg").write_bytes((tmp_path / "ok.jpg").read_bytes()[:200])
    with pytest.raises(ClippingEdgeError, match="truncated or corrupt"):
        load_image(tmp_path / "cut.jpg")
    import clipping_edge.preprocess as pre
    monkeypatch.setattr(pre, "MAX_PIXELS", 1000)
    with pytest.raises(ClippingEdgeError, match="pixel limit"):
        load_image(tmp_path / "ok.jpg")


def test_unknown_is_measured_against_junk_not_a_cosine_from_another_domain(tiny_bundle: Path, small_data: Path):
    from clipping_edge.junk import REFERENCE_PER_FAMILY, REFERENCE_SEED, junk_images

    model = clipping_edge.load(tiny_bundle)
    unknown = model.manifest.unknown
    measured = unknown["measured"]
    assert unknown["images"] == len(model.junk_embeddings()) == 4 * REFERENCE_PER_FAMILY
    assert 0 <= measured["in_domain_accepted"] <= 1 and set(measured["fresh_junk_rejected"]) == set(unknown["families"])
    clf = ZeroShotClassifier(model, ["red circle", "blue square", "green triangle"])
    reference = [image for images in junk_images(REFERENCE_SEED, REFERENCE_PER_FAMILY).values() for image in images]
    # the reference itself never clears its own ceiling: the rule is a strict "closer than junk gets"
    assert all(preds[0].label == "unknown" for preds in clf.classify(reference, min_cosine="auto"))
    # an image above its best class's ceiling keeps its answer, and the class rows after "unknown" are untouched
    images = sorted((small_data / "test" / "images").iterdir())[:64]
    plain, auto = clf.classify(images, top_k=2), clf.classify(images, top_k=2, min_cosine="auto")
    ceilings = clf.junk_ceilings()
    for p, a in zip(plain, auto):
        expected_unknown = p[0].cosine <= ceilings[clf.labels.index(p[0].label)] + 1e-4
        assert (a[0].label == "unknown") == expected_unknown
        assert (a[1:] if expected_unknown else a) == p
        assert not expected_unknown or a[0].score == 0.0
    image = images[0]
    best = clf.classify(image)[0][0]
    assert clf.classify(image, min_cosine=best.cosine + 1e-3)[0][0].label == "unknown"
    assert clf.classify(image, min_cosine=best.cosine - 1e-3)[0][0].label == best.label


def test_litert_feeds_a_quantized_input_quantized():
    """A statically quantized LiteRT tower takes int8 pixels: x / scale + zero point, not a cast (which made
    every [0, 1] pixel 0 or 1), and its int8 output is dequantized."""
    from clipping_edge.backends.litert import dequantize, quantize

    detail = {"dtype": np.int8, "quantization": (1 / 255, -128)}
    pixels = np.array([0.0, 0.2, 0.6, 1.0], np.float32)
    q = quantize(pixels, detail)
    assert q.dtype == np.int8 and q.tolist() == [-128, -77, 25, 127]
    np.testing.assert_allclose(dequantize(q, detail), pixels, atol=0.5 / 255 + 1e-6)
    ids = {"dtype": np.int32, "quantization": (0.0, 0)}  # token ids: a plain integer input
    assert quantize(np.array([[101, 2023]]), ids).tolist() == [[101, 2023]]
    assert dequantize(np.array([3, 4], np.int32), ids).dtype == np.float32


def test_a_device_wheel_builds_and_holds_the_runtime(tmp_path: Path):
    """README's device install: `pip wheel --no-deps` here, the wheel copied to the device."""
    import zipfile

    # Built from a copy: setuptools writes build/ and *.egg-info next to the sources it builds.
    repo, source = Path(__file__).resolve().parents[1], tmp_path / "source"
    for name in ("clipping_edge", "training", "export", "benchmarks"):
        shutil.copytree(repo / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copyfile(repo / name, source / name)
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                             str(tmp_path), str(source)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    (wheel,) = tmp_path.glob("clipping_edge-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"clipping_edge/cli.py", "clipping_edge/golden.py", "clipping_edge/backends/onnxruntime.py"} <= names
    metadata = next(n for n in names if n.endswith("METADATA"))
    requires = zipfile.ZipFile(wheel).read(metadata).decode()
    assert "Requires-Dist: onnxruntime" in requires and "extra == \"onnx\"" in requires
    assert not any(line.startswith("Requires-Dist: torch") and "extra" not in line for line in requires.splitlines())


def test_next_lines_name_the_command_as_this_shell_runs_it(monkeypatch, tmp_path: Path):
    import sys

    from clipping_edge.shell import command_name

    script = tmp_path / "venv" / "bin" / "clipping-edge"
    script.parent.mkdir(parents=True)
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    monkeypatch.setattr(sys, "argv", [str(script)])
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert command_name() == str(script)  # a venv that is not activated: its full path
    monkeypatch.setenv("PATH", f"{script.parent}:/usr/bin:/bin")
    assert command_name() == "clipping-edge"
    monkeypatch.setattr(sys, "argv", ["pytest"])
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert command_name() == f"{sys.executable} -m clipping_edge.cli"
