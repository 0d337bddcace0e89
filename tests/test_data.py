"""Built-in synthetic data and the generic folder + CSV/JSONL format."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clipping_edge import ClippingEdgeError
from clipping_edge.training.data.pairs import read_pairs, resolve_split
from clipping_edge.training.data.synthetic import HELD_OUT, SHAPES, class_names, generate, sample_scene


def test_scenes_are_deterministic_by_seed():
    a_img, a_cap, a_lab = sample_scene(3, "train", 17, 48)
    b_img, b_cap, b_lab = sample_scene(3, "train", 17, 48)
    c_img, c_cap, _ = sample_scene(4, "train", 17, 48)
    assert (a_cap, a_lab) == (b_cap, b_lab) and np.array_equal(np.asarray(a_img), np.asarray(b_img))
    assert a_cap != c_cap or not np.array_equal(np.asarray(a_img), np.asarray(c_img))


def test_held_out_compositions_never_appear_in_training_captions():
    held = {f"{c} {s}" for c, s in HELD_OUT}
    assert len(held) == len(HELD_OUT) and held < set(class_names())
    for i in range(600):
        _, caption, label = sample_scene(0, "train", i, 32)
        assert label not in held
    test_labels = {sample_scene(0, "test", i, 32)[2] for i in range(len(class_names()))}
    assert test_labels == set(class_names())  # every class, held-out ones included, in the test split


def test_generate_writes_the_generic_format(small_data: Path):
    train = read_pairs(resolve_split(small_data, "train"))
    test = read_pairs(resolve_split(small_data, "test"))
    assert len(train) == 2048 and len(test) == 480
    assert Image.open(train.pairs[0].image).size == (32, 32)
    assert test.zero_shot is not None and len(test.zero_shot.classes) == 8 * len(SHAPES)
    assert set(test.zero_shot.held_out) == {f"{c} {s}" for c, s in HELD_OUT}
    assert all(p.label in test.zero_shot.classes for p in test.pairs)


def test_user_jsonl_and_csv_datasets(tmp_path: Path):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    (tmp_path / "captions.jsonl").write_text(json.dumps({"image": "a.png", "caption": "a black square"}) + "\n")
    pairs = read_pairs(resolve_split(tmp_path, "train"))  # no split folders: the folder is the split
    assert pairs.captions == ["a black square"] and pairs.zero_shot is None

    other = tmp_path / "csv" / "train"
    other.mkdir(parents=True)
    (other / "captions.csv").write_text("image,caption\nmissing.png,a cat\n")
    with pytest.raises(ClippingEdgeError, match="do not exist"):
        read_pairs(other)
    (other / "captions.csv").write_text("path,text\nx.png,a cat\n")
    with pytest.raises(ClippingEdgeError, match="image,caption"):
        read_pairs(other)


def test_generation_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import clipping_edge.training.data.synthetic as synthetic

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(synthetic, "zero_shot_spec", boom)
    with pytest.raises(RuntimeError):
        generate(tmp_path / "out", n_train=4, n_test=4, progress=False)
    assert list(tmp_path.iterdir()) == []
