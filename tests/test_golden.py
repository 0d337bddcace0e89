"""Golden vectors: every bundle carries what a port must reproduce; `verify` re-checks them and can fail."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import clipping_edge
from clipping_edge.cli import main
from clipping_edge.golden import verify


def test_a_fresh_bundle_verifies_with_its_own_runtime(tiny_bundle: Path, capsys: pytest.CaptureFixture):
    model = clipping_edge.load(tiny_bundle)
    golden = json.loads((tiny_bundle / model.manifest.golden).read_text())
    # Plain files a port reads without Python: the arrays' sizes are exactly their stated shapes.
    for spec in golden["arrays"].values():
        data = (tiny_bundle / "golden" / spec["file"]).read_bytes()
        assert len(data) == 4 * int(np.prod(spec["shape"]))
    assert len(golden["images"]) == golden["arrays"]["pixels"]["shape"][0] == len(golden["expected_top_k"]) >= 2
    assert golden["templates"] == model.manifest.templates
    report = verify(model)
    assert report["passed"], report["failures"]
    assert report["image_cosine_min"] > 0.99999 and report["text_cosine_min"] > 0.99999 and report["pixels_max_abs"] == 0
    assert main(["verify", str(tiny_bundle)]) == 0
    assert "verified" in capsys.readouterr().out


def test_verify_catches_a_port_that_swaps_channels(tiny_bundle: Path):
    """A port that feeds BGR (OpenCV's order) gets other pixels and, through the tower, other embeddings."""
    model = clipping_edge.load(tiny_bundle)
    report = verify(model, encode_pixels=lambda pixels: model.encode_pixels(np.ascontiguousarray(pixels[:, ::-1])))
    assert not report["passed"] and "image embeddings" in report["failures"]
    from clipping_edge.preprocess import preprocess_batch

    report = verify(model, preprocess=lambda images, size: preprocess_batch(images, size)[:, ::-1])
    assert not report["passed"] and report["failures"] == ["pixels"]


def test_damaged_golden_vectors_are_refused(tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture):
    copy = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, copy)
    embeddings = copy / "golden" / "image_embeddings.f32"
    data = bytearray(embeddings.read_bytes())
    data[0] ^= 0xFF
    embeddings.write_bytes(bytes(data))
    assert main(["verify", str(copy)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "checksum" in err and "\n" not in err
