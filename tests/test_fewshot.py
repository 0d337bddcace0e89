"""Few-shot classes on the device (issue 33): torch-free heads fitted on a few example images, in the index."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import clipping_edge
from clipping_edge import ZeroShotClassifier
from clipping_edge.errors import ClippingEdgeError
from clipping_edge.fewshot import METHODS, Shots, choose, choose_method, fit


def plain(colour: tuple[int, int, int], seed: int, size: int = 40) -> np.ndarray:
    """A flat colour with a little noise: images the tiny tower tells apart without any training on them."""
    rng = np.random.default_rng(seed)
    return np.clip(np.asarray(colour) + rng.normal(0, 6, (size, size, 3)), 0, 255).astype(np.uint8)


def synthetic_shots(classes: int = 4, per_class: int = 6, dim: int = 16, seed: int = 0) -> Shots:
    """Shots clustered by class, and text prototypes that point half-way wrong: image evidence must help."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim))
    x = np.concatenate([centres[c] + 0.6 * rng.normal(size=(per_class, dim)) for c in range(classes)])
    text = np.roll(centres, 1, axis=0) * 0.5 + centres * 0.5 + rng.normal(size=(classes, dim))
    norm = lambda a: (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)  # noqa: E731
    return Shots(norm(text), np.ones(classes, bool), norm(x), np.repeat(np.arange(classes), per_class))


@pytest.mark.parametrize("method", METHODS)
def test_leave_one_out_never_picks_worse_than_zero_shot_on_the_shots(method: str):
    for seed in range(5):
        shots = synthetic_shots(seed=seed)
        settings, accuracy, zero_shot = choose(method, shots, scale=20.0)
        assert accuracy >= zero_shot
        # the grid's first setting is zero-shot itself: same logits as scale x cosine to the text prototypes
        first = fit(method, shots, 20.0, {"mix": {"alpha": 1.0}, "tip": {"beta": 1.0, "weight": 0.0},
                                          "lda": {"gamma": 0.0, "shrinkage": 0.2}}[method])
        np.testing.assert_allclose(first.logits(shots.embeddings), 20.0 * shots.embeddings @ shots.text.T, rtol=1e-5, atol=1e-5)
    # where the text is misleading and the shots cluster, the shots win by a margin
    record = choose_method("auto", synthetic_shots(seed=1), 20.0)
    assert record["tried"][record["method"]]["loo_accuracy"] > record["loo_zero_shot"] + 0.2


def test_a_class_added_from_shots_alone_is_found_by_a_held_out_shot(tiny_bundle: Path):
    model = clipping_edge.load(tiny_bundle)
    classifier = ZeroShotClassifier(model, ["red circle", "blue square", "green triangle"])
    reds = [plain((200, 30, 30), seed) for seed in range(6)]
    classifier.add_class("my red mug", reds[:5], text=False)
    assert classifier.labels[-1] == "my red mug" and not classifier.index.has_text[-1]
    assert len(classifier.index.shot_labels) == 5 and classifier.index.fewshot["method"] in METHODS
    assert classifier.classify(reds[5])[0][0].label == "my red mug"
    blues = [plain((30, 40, 210), 100 + seed) for seed in range(6)]
    with pytest.raises(ClippingEdgeError, match="already"):
        classifier.add_class("blue square", blues[:5])
    classifier.remove_class("my red mug")
    assert classifier.labels == ["red circle", "blue square", "green triangle"] and len(classifier.index.shot_labels) == 0
    with pytest.raises(ClippingEdgeError, match="not in the index"):
        classifier.remove_class("my red mug")


def test_text_classes_and_shot_classes_mix_and_round_trip(tiny_bundle: Path, tmp_path: Path):
    model = clipping_edge.load(tiny_bundle)
    shots = {"reds": [plain((200, 30, 30), s) for s in range(4)], "blue square": [plain((30, 40, 210), s) for s in range(4)]}
    classifier = ZeroShotClassifier(model, ["red circle", "blue square"], shots=shots, shot_text=False)
    assert classifier.labels == ["red circle", "blue square", "reds"]
    assert classifier.index.has_text.tolist() == [True, True, False]
    assert np.bincount(classifier.index.shot_labels).tolist() == [0, 4, 4]
    probe = [plain((200, 30, 30), 50), plain((30, 40, 210), 51)]
    before = classifier.probabilities(model.encode_image(probe))
    path = classifier.save_index(tmp_path / "fewshot.usearch")
    loaded = ZeroShotClassifier.from_index(model, path)
    np.testing.assert_allclose(loaded.probabilities(model.encode_image(probe)), before, atol=1e-6)
    assert loaded.index.fewshot == classifier.index.fewshot and loaded.index.templates == classifier.index.templates
    # a changed shot is caught by the checksum before the index is used
    data = bytearray(path.read_bytes())
    data[-7] ^= 0x40
    path.write_bytes(bytes(data))
    with pytest.raises(ClippingEdgeError, match="checksum"):
        ZeroShotClassifier.from_index(model, path)


def test_shot_folders_through_the_cli(capsys, tiny_bundle: Path, tmp_path: Path):
    from PIL import Image

    from clipping_edge.cli import main

    for name, colour in (("red thing", (200, 30, 30)), ("blue thing", (30, 40, 210))):
        (tmp_path / "shots" / name).mkdir(parents=True)
        for seed in range(4):
            Image.fromarray(plain(colour, seed)).save(tmp_path / "shots" / name / f"{seed}.png")
    Image.fromarray(plain((200, 30, 30), 77)).save(tmp_path / "query.png")
    index = tmp_path / "classes.usearch"
    assert main(["index", "build", "--bundle", str(tiny_bundle), "--shots", str(tmp_path / "shots"), "--labels",
                 "green triangle,yellow star", "--out", str(index), "--json"]) == 0
    built = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert built["classes"] == 4 and built["shots"] == 8 and built["fewshot"]["method"] in METHODS
    assert main(["classify", "--bundle", str(tiny_bundle), "--labels-index", str(index), "--json", str(tmp_path / "query.png")]) == 0
    assert json.loads(capsys.readouterr().out)["predictions"][0]["label"] == "red thing"
    assert main(["index", "add-class", "green thing", "--bundle", str(tiny_bundle), "--index", str(index), "--shots",
                 str(tmp_path / "shots" / "red thing"), "--no-text"]) == 0
    assert main(["index", "remove-class", "green thing", "--bundle", str(tiny_bundle), "--index", str(index)]) == 0
    capsys.readouterr()
    for argv, expected in ((["index", "build", "--bundle", str(tiny_bundle), "--out", str(tmp_path / "x")], "needs classes"),
                           (["index", "build", "--bundle", str(tiny_bundle), "--shots", str(tmp_path / "query.png"),
                             "--out", str(tmp_path / "x")], "not a folder"),
                           (["index", "remove-class", "nope", "--bundle", str(tiny_bundle), "--index", str(index)], "not in the index")):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err and expected in err, err
