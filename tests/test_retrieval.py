"""Image galleries (text -> image, image -> image), the streaming pipeline, i8 prototype indexes and
the `index` commands, on the tiny exported student."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import clipping_edge
from clipping_edge import ClippingEdgeError, PrototypeIndex, ZeroShotClassifier
from clipping_edge.cli import main
from clipping_edge.gallery import ImageGallery
from clipping_edge.pipeline import embed_images, expand_images


def _test_images(small_data: Path, n: int) -> list[Path]:
    return sorted((small_data / "test" / "images").iterdir())[:n]


def test_gallery_search_ranks_like_brute_force_and_grows(tiny_bundle: Path, small_data: Path, tmp_path: Path):
    model = clipping_edge.load(tiny_bundle)
    images = _test_images(small_data, 60)
    gallery = ImageGallery.create(model)
    assert gallery.add(model, images[:40]) == 40
    path = gallery.save(tmp_path / "gallery")
    reopened = ImageGallery.open(path, model)
    assert reopened.add(model, images[30:]) == 20  # the 10 already present are not added twice
    reopened.save(path)
    gallery = ImageGallery.open(path, model, view=True)
    assert len(gallery) == 60 and gallery.paths == [str(p.resolve()) for p in images]

    query = "a drawing of a crimson round shape."
    hits = gallery.search_text(model, [query], k=5)[0]
    scores = model.encode_image(images) @ model.encode_text([query])[0]
    expected = [str(images[i].resolve()) for i in np.argsort(-scores)[:5]]
    assert [h.path for h in hits] == expected
    np.testing.assert_allclose([h.score for h in hits], np.sort(scores)[::-1][:5], atol=2e-3)  # f16 index
    same = gallery.search_image(model, [images[7]], k=3)[0]
    assert same[0].path == str(images[7].resolve()) and same[0].score > 0.999


def test_gallery_refusals(tiny_bundle: Path, small_data: Path, tmp_path: Path):
    model = clipping_edge.load(tiny_bundle)
    protos = ZeroShotClassifier(model, ["red circle", "blue square"]).save_index(tmp_path / "protos")
    with pytest.raises(ClippingEdgeError, match="not an image gallery"):
        ImageGallery.open(protos, model)
    gallery = ImageGallery.create(model)
    gallery.add(model, _test_images(small_data, 4))
    gallery.fingerprint = "f" * 16
    path = gallery.save(tmp_path / "other")
    with pytest.raises(ClippingEdgeError, match="another model"):
        ImageGallery.open(path, model)


def test_stream_matches_batch_and_skips_unreadable(tiny_bundle: Path, small_data: Path, tmp_path: Path):
    model = clipping_edge.load(tiny_bundle)
    images = _test_images(small_data, 37)
    frames = (np.asarray(Image.open(p).convert("RGB")) for p in images)  # a camera: uint8 frames, lazily
    streamed = np.concatenate([emb for _, emb in embed_images(model, frames, batch_size=8)])
    np.testing.assert_allclose(streamed, model.encode_image(images), atol=1e-5)

    broken = tmp_path / "broken.png"
    broken.write_bytes(images[0].read_bytes()[:100])
    with pytest.raises(ClippingEdgeError, match="broken.png"):
        list(embed_images(model, [images[0], broken]))
    kept = [src for srcs, _ in embed_images(model, [images[0], broken, images[1]], skip_unreadable=True) for src in srcs]
    assert kept == [images[0], images[1]]

    clf = ZeroShotClassifier(model, ["red circle", "blue square", "green star"])
    streamed = [preds for _, preds in clf.classify_stream(images, top_k=2, batch_size=5)]
    batched = clf.classify(images, top_k=2)
    assert [[p.label for p in row] for row in streamed] == [[p.label for p in row] for row in batched]
    np.testing.assert_allclose([[p.score for p in row] for row in streamed], [[p.score for p in row] for row in batched],
                               atol=1e-5)


def test_expand_images(small_data: Path, tmp_path: Path):
    found = expand_images([small_data / "test" / "images"])
    assert len(found) == 480 and found == sorted(found)
    with pytest.raises(ClippingEdgeError, match="does not exist"):
        expand_images([tmp_path / "nowhere"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ClippingEdgeError, match="no images found"):
        expand_images([tmp_path / "empty"])


def test_i8_prototypes_only_when_they_rank_like_f32():
    rng = np.random.default_rng(0)
    spread = rng.normal(size=(50, 64)).astype(np.float32)
    spread /= np.linalg.norm(spread, axis=1, keepdims=True)
    index = PrototypeIndex.build(spread, [f"c{i}" for i in range(50)], "fp", dtype="i8")
    assert index.dtype == "i8"
    # Classes a hair apart: int8 cannot tell them apart the way float32 does.
    base = rng.normal(size=64).astype(np.float32)
    crowded = base + 2e-3 * rng.normal(size=(50, 64)).astype(np.float32)
    crowded /= np.linalg.norm(crowded, axis=1, keepdims=True)
    with pytest.raises(ClippingEdgeError, match="i8 prototype index would change results"):
        PrototypeIndex.build(crowded, [f"c{i}" for i in range(50)], "fp", dtype="i8")


def test_index_commands(capsys: pytest.CaptureFixture, tiny_bundle: Path, small_data: Path, tmp_path: Path):
    labels = json.loads((small_data / "test" / "zeroshot.json").read_text())["classes"]
    (tmp_path / "labels.txt").write_text("\n".join(labels))
    assert main(["index", "build", "--bundle", str(tiny_bundle), "--labels", str(tmp_path / "labels.txt"),
                 "--out", str(tmp_path / "classes")]) == 0
    rows = list(csv.DictReader((small_data / "test" / "captions.csv").open()))[:20]
    images = [str(small_data / "test" / r["image"]) for r in rows]
    capsys.readouterr()
    assert main(["classify", "--bundle", str(tiny_bundle), "--labels-index", str(tmp_path / "classes.usearch"),
                 "--json", "--top-k", "1", *images]) == 0
    by_index = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert main(["classify", "--bundle", str(tiny_bundle), "--labels", str(tmp_path / "labels.txt"),
                 "--json", "--top-k", "1", *images]) == 0
    by_labels = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["predictions"][0]["label"] for r in by_index] == [r["predictions"][0]["label"] for r in by_labels]

    assert main(["index", "add", "--bundle", str(tiny_bundle), "--index", str(tmp_path / "gallery"),
                 str(small_data / "test" / "images")]) == 0
    added = capsys.readouterr()
    assert "added 480 images" in added.out
    assert added.err.strip().splitlines()[-1].startswith("embedded 480/480 images (")  # progress, always its last line
    assert main(["index", "add", "--bundle", str(tiny_bundle), "--index", str(tmp_path / "gallery"), "--json", images[0]]) == 0
    assert json.loads(capsys.readouterr().out) == {"index": str(tmp_path / "gallery.usearch"), "added": 0, "images": 480}
    assert main(["index", "search", "--bundle", str(tiny_bundle), "--index", str(tmp_path / "gallery.usearch"),
                 "--json", "--top-k", "3", "--image", images[0]]) == 0
    hits = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert hits[0]["path"] == str(Path(images[0]).resolve()) and [h["rank"] for h in hits] == [1, 2, 3]
    assert main(["index", "search", "--bundle", str(tiny_bundle), "--index", str(tmp_path / "gallery.usearch")]) == 2
    assert "not both or neither" in capsys.readouterr().err
