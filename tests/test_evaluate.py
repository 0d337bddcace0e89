"""Evaluation: prompt sets, the linear probe, attribute-swap foils and `clipping-edge eval` end to end."""

import csv
import json
import shutil
from pathlib import Path
from typing import Sequence

import numpy as np
import pytest

import clipping_edge.training.evaluate as training_evaluate
from clipping_edge import ClippingEdgeError
from clipping_edge.cli import main
from clipping_edge.prompts import DEFAULT_TEMPLATES, IMAGENET_80_TEMPLATES, template_set
from clipping_edge.training.checkpoint import load_student
from clipping_edge.training.data.pairs import read_pairs
from clipping_edge.training.data.synthetic import COLOURS, SHAPES, ZERO_SHOT_TEMPLATES
from clipping_edge.training.evaluate import (attribute_foil_metrics, colour_shape_labels, evaluate, foil_caption, full_evaluation,
                               linear_probe)


def test_template_sets():
    assert len(IMAGENET_80_TEMPLATES) == 80 and len(set(IMAGENET_80_TEMPLATES)) == 80
    assert all(t.count("{}") == 1 for t in IMAGENET_80_TEMPLATES)
    assert len(DEFAULT_TEMPLATES) == 7 and set(DEFAULT_TEMPLATES) <= set(IMAGENET_80_TEMPLATES)
    assert template_set("dataset", ["a photo of a {}."]) == ["a photo of a {}."]
    assert template_set("dataset") == template_set("7") == list(DEFAULT_TEMPLATES)
    assert len(template_set("80")) == 80
    with pytest.raises(ClippingEdgeError, match="unknown template set"):
        template_set("81")


def _blobs(rng: np.random.Generator, n: int, classes: int, dim: int = 32) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    centres = rng.normal(size=(classes, dim))
    y = rng.integers(0, classes, n)
    return centres, centres[y] + 0.3 * rng.normal(size=(n, dim)), y


def test_linear_probe_separable_and_random_labels():
    rng = np.random.default_rng(0)
    centres, x, y = _blobs(rng, 900, 6)
    test_y = rng.integers(0, 6, 600)
    test_x = centres[test_y] + 0.3 * rng.normal(size=(600, 32))
    assert linear_probe(x, y, test_x, test_y).top1 > 0.98
    # Labels that carry no information: held-out accuracy is chance (1/6), however well train is fitted.
    shuffled = linear_probe(x, rng.integers(0, 6, 900), test_x, test_y)
    assert abs(shuffled.top1 - 1 / 6) < 0.07 and shuffled.n_classes == 6


class ToyEncoder:
    """Designed embeddings: a text is one-hot(colour) + one-hot(shape) of the words it names; an
    'image' is a (colour, shape) index pair embedded the same way."""

    colours, shapes = list(COLOURS), list(SHAPES)

    def _embed(self, colour: int, shape: int) -> np.ndarray:
        v = np.zeros(len(self.colours) + len(self.shapes), np.float32)
        v[colour], v[len(self.colours) + shape] = 1, 1
        return v / np.linalg.norm(v)

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        def parse(text: str) -> tuple[int, int]:
            words = text.rstrip(".").split()
            return self.colours.index(words[-2]), self.shapes.index(words[-1])
        return np.stack([self._embed(*parse(t)) for t in texts])

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        return np.stack([self._embed(c, s) for c, s in pixels])


def test_attribute_foils_on_a_toy_encoder():
    toy = ToyEncoder()
    pairs = [(c, s) for c in range(len(toy.colours)) for s in range(len(toy.shapes))]
    labels = [f"{toy.colours[c]} {toy.shapes[s]}" for c, s in pairs]
    matched = toy.encode_pixels(np.asarray(pairs))
    assert attribute_foil_metrics(toy, matched, labels, held_out=["red triangle"]) == {
        "foil_colour_acc": 1.0, "foil_shape_acc": 1.0, "foil_acc": 1.0, "foil_acc_held_out": 1.0}

    # Images that look like another colour: every colour foil wins, no shape foil does.
    wrong_colour = toy.encode_pixels(np.asarray([((c + 1) % len(toy.colours), s) for c, s in pairs]))
    assert attribute_foil_metrics(toy, wrong_colour, labels) == {"foil_colour_acc": 0.0, "foil_shape_acc": 1.0, "foil_acc": 0.0}
    wrong_shape = toy.encode_pixels(np.asarray([(c, (s + 1) % len(toy.shapes)) for c, s in pairs]))
    assert attribute_foil_metrics(toy, wrong_shape, labels) == {"foil_colour_acc": 1.0, "foil_shape_acc": 0.0, "foil_acc": 0.0}
    # A blind encoder ties the true caption with its foils: ties are misses, not wins.
    assert attribute_foil_metrics(toy, np.zeros_like(matched), labels)["foil_acc"] == 0.0

    assert foil_caption("orange", "star") == "a photo of an orange star."
    assert colour_shape_labels(["cat", "red dog"]) is None and colour_shape_labels(["red circle"]) == [("red", "circle")]
    with pytest.raises(ClippingEdgeError, match="<colour> <shape>"):
        attribute_foil_metrics(toy, matched[:2], ["cat", "dog"])


def test_full_evaluation_keeps_evaluate_figures(tiny_checkpoint: Path, small_data: Path, monkeypatch: pytest.MonkeyPatch):
    model, tokenizer, _ = load_student(tiny_checkpoint)
    pairs = read_pairs(small_data / "test", limit=240)
    quick = evaluate(model, tokenizer, pairs)
    full = full_evaluation(model, tokenizer, pairs).metrics
    assert {k: full[k] for k in quick} == quick and pairs.zero_shot.templates == ZERO_SHOT_TEMPLATES

    used = []
    prototypes = training_evaluate.class_prototypes
    monkeypatch.setattr(training_evaluate, "class_prototypes", lambda enc, classes, templates, synonyms=None:
                        used.append(list(templates)) or prototypes(enc, classes, templates, synonyms))
    eighty = full_evaluation(model, tokenizer, pairs, templates="80")
    assert used == [list(IMAGENET_80_TEMPLATES)] and eighty.info["prompts_per_name"] == 80
    assert set(eighty.metrics) == set(full)


def test_eval_command_prints_a_table_and_writes_json(tiny_checkpoint: Path, small_data: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture):
    out = tmp_path / "metrics.json"
    assert main(["eval", "--checkpoint", str(tiny_checkpoint), "--data", str(small_data), "--probe-limit", "1000",
                 "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    for heading in ("zero-shot", "retrieval", "linear probe", "composition", "held-out compositions", "attribute-swap foils"):
        assert heading in printed
    report = json.loads(out.read_text())
    metrics = report["metrics"]
    expected = {"zero_shot_top1", "zero_shot_top5", "zero_shot_top1_seen", "zero_shot_top1_held_out", "linear_probe_top1",
                "foil_colour_acc", "foil_shape_acc", "foil_acc", "foil_acc_held_out",
                *(f"{d}_R@{k}" for d in ("image_to_text", "text_to_image") for k in (1, 5, 10))}
    assert expected <= set(metrics) and all(0 <= v <= 1 for v in metrics.values())
    assert report["images"] == 480 and report["probe_train_images"] == 1000 and report["templates"] == "dataset"
    # A trained student beats chance: 48 classes zero-shot, 40 classes in the probe, 1/8 on colour foils.
    assert metrics["zero_shot_top1"] > 3 / 48 and metrics["linear_probe_top1"] > 3 / 40
    assert metrics["foil_colour_acc"] > 2 / 8
    # The synthetic train split never shows held-out compositions: the probe scores only the classes it saw.
    assert report["probe_test_images"] == 400 and any("not scored" in n for n in report["notes"])


def one_error_line(capsys: pytest.CaptureFixture, *argv: str) -> str:
    assert main(list(argv)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    return err


def test_eval_bad_input(tiny_checkpoint: Path, small_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture):
    ckpt = str(tiny_checkpoint)
    assert "unknown template set '81'" in one_error_line(capsys, "eval", "--checkpoint", ckpt, "--templates", "81")
    # A split without labels: retrieval only, with a note; asking for a prompt set there is an error.
    split = tmp_path / "unlabelled"
    (split / "images").mkdir(parents=True)
    with open(split / "captions.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "caption"])
        for pair in read_pairs(small_data / "test", limit=40).pairs:
            shutil.copy(pair.image, split / "images" / pair.image.name)
            writer.writerow([f"images/{pair.image.name}", pair.caption])
    assert "no label column" in one_error_line(capsys, "eval", "--checkpoint", ckpt, "--data", str(split), "--templates", "7")
    assert main(["eval", "--checkpoint", ckpt, "--data", str(split)]) == 0
    printed = capsys.readouterr().out
    assert "retrieval" in printed and "zero-shot and foils skipped" in printed and "top-5" not in printed


def test_zero_shot_diagnosis_blames_the_right_side():
    from clipping_edge.training.metrics import zero_shot_diagnosis, zero_shot_metrics

    rng = np.random.default_rng(0)
    centres = np.linalg.qr(rng.normal(size=(16, 4)))[0].T  # four orthonormal class centres
    labels = np.repeat([0, 1, 2, 3], 20)
    images = centres[labels] + 0.05 * rng.normal(size=(80, 16))
    images /= np.linalg.norm(images, axis=1, keepdims=True)
    # The prompts of classes 0-2 name each other's images: the images separate perfectly, the text misnames three.
    prototypes = centres[[1, 2, 0, 3]]
    found = zero_shot_diagnosis(images, prototypes, labels)
    assert found["top1"] == pytest.approx(zero_shot_metrics(images, prototypes, labels)["zero_shot_top1"]) == pytest.approx(0.25)
    assert found["confusion"] == [[0, 0, 20, 0], [20, 0, 0, 0], [0, 20, 0, 0], [0, 0, 0, 20]]  # rows: true class
    assert found["per_class_top1"] == [0.0, 0.0, 0.0, 1.0]
    assert found["class_mean_oracle_top1"] == 1.0 and abs(found["image_class_mean_cosine"]) < 0.1
    # Every image at one point: no prototype can tell the classes apart there.
    same = np.tile(images[:1], (80, 1))
    assert zero_shot_diagnosis(same, centres, labels)["image_class_mean_cosine"] == pytest.approx(1.0)


def test_zero_shot_diagnosis_script_matches_evaluate(tiny_checkpoint: Path, small_data: Path):
    from clipping_edge.benchmarks.zero_shot_diagnosis import diagnose, report

    model, tokenizer, _ = load_student(tiny_checkpoint)
    expected = evaluate(model, tokenizer, read_pairs(training_evaluate.resolve_split(str(small_data), "test")))
    classes, found = diagnose(str(tiny_checkpoint), str(small_data))
    assert found["top1"] == pytest.approx(expected["zero_shot_top1"])
    assert sum(map(sum, found["confusion"])) == 480 and found["class_mean_oracle_top1"] >= found["top1"]
    assert report(classes, found).startswith(f"zero-shot top-1 {100 * found['top1']:.1f} %")
    test_pairs = read_pairs(training_evaluate.resolve_split(str(small_data), "test"))
    with_80 = training_evaluate.full_evaluation(model, tokenizer, test_pairs, templates="80").metrics["zero_shot_top1"]
    assert diagnose(str(tiny_checkpoint), str(small_data), templates="80")[1]["top1"] == pytest.approx(with_80)

    import subprocess
    import sys

    bad = subprocess.run([sys.executable, "-m", "clipping_edge.benchmarks.zero_shot_diagnosis", "--checkpoint", str(tiny_checkpoint),
                          "--data", str(small_data / "missing")], capture_output=True, text=True)
    assert bad.returncode != 0 and bad.stderr.strip().startswith("error: ") and "\n" not in bad.stderr.strip()


def test_class_positions_name_a_label_outside_the_classes():
    from clipping_edge.errors import ClippingEdgeError
    from clipping_edge.training.evaluate import class_positions

    assert class_positions(["cat", "dog"], ["dog", "cat", "dog"], "x").tolist() == [1, 0, 1]
    with pytest.raises(ClippingEdgeError, match="'bird' of data/test is not among zeroshot.json's classes"):
        class_positions(["cat", "dog"], ["dog", "bird"], "data/test")
