"""Dataset sources beyond the generic folder: .tar shards, `a+b` mixtures, and the preparers of the real
sets that ship in Debian packages, each run on tiny fixtures written here in the upstream formats."""

import csv
import gzip
import io
import json
import os
import struct
import tarfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFont

from clipping_edge import ClippingEdgeError
from clipping_edge.cli import main
from clipping_edge.preprocess import load_image
from clipping_edge.training.data.pairs import Mixture, read_pairs, resolve_split
from clipping_edge.training.data.prepare import prepare
from clipping_edge.training.data.sources.emoji import NOTO_EMOJI, SKIN_TONES, prepare_emoji
from clipping_edge.training.data.sources.fashion_mnist import prepare_fashion_mnist, read_idx
from clipping_edge.training.data.sources.openclipart import prepare_openclipart
from clipping_edge.training.data.sources.tuxpaint import prepare_tuxpaint
from clipping_edge.training.data.shard_writer import write_shards
from clipping_edge.training.data.shards import ShardSplit, expand_braces

# -- fixtures ---------------------------------------------------------------------------------------


def _noise(seed: int, size: tuple[int, int], mode: str = "RGB") -> Image.Image:
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    return Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode)


def _generic(root: Path, n_train: int = 7, n_test: int = 3) -> Path:
    """A generic-format set whose images are PNG, JPEG, RGBA PNG and BMP (BMP must be re-encoded in shards)."""
    kinds = [("png", "RGB"), ("jpg", "RGB"), ("png", "RGBA"), ("bmp", "RGB")]
    for split, n in (("train", n_train), ("test", n_test)):
        (root / split / "images").mkdir(parents=True)
        rows = []
        for i in range(n):
            ext, mode = kinds[i % len(kinds)]
            name = f"images/{i:03d}.{ext}"
            _noise(i + 100 * (split == "test"), (12 + i, 10), mode).save(root / split / name)
            rows.append([name, f"{split} caption number {i}", "cat" if i % 2 else "dog"])
        with open(root / split / "captions.csv", "w", newline="") as f:
            csv.writer(f).writerows([["image", "caption", "label"], *rows])
    (root / "zeroshot.json").write_text(json.dumps({"classes": ["cat", "dog"], "templates": ["a {}."]}))
    return root


def _pixels(pair) -> np.ndarray:
    return np.asarray(load_image(pair.source()))


def _tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _png_bytes(seed: int) -> bytes:
    buffer = io.BytesIO()
    _noise(seed, (8, 8)).save(buffer, format="PNG")
    return buffer.getvalue()


# -- shards -----------------------------------------------------------------------------------------


def test_shards_round_trip_captions_labels_and_pixels(tmp_path: Path):
    data = _generic(tmp_path / "generic")
    written = write_shards(data, tmp_path / "shards", per_shard=3)
    assert written == {"train": (7, 3), "test": (3, 1)}
    assert sorted(p.name for p in (tmp_path / "shards" / "train").iterdir()) == [f"train-00000{i}.tar" for i in range(3)]
    for split in ("train", "test"):
        original = read_pairs(resolve_split(data, split))
        sharded = read_pairs(resolve_split(tmp_path / "shards", split))
        assert isinstance(resolve_split(tmp_path / "shards", split), ShardSplit)
        assert sharded.captions == original.captions
        assert [p.label for p in sharded.pairs] == [p.label for p in original.pairs]
        assert all(p.member is not None and isinstance(p.source(), bytes) for p in sharded.pairs)
        for a, b in zip(original.pairs, sharded.pairs):
            assert np.array_equal(_pixels(a), _pixels(b)), b.name
        assert sharded.zero_shot is not None and sharded.zero_shot.classes == ["cat", "dog"]
    with tarfile.open(tmp_path / "shards" / "train" / "train-000001.tar") as tar:
        assert tar.getnames() == ["00000003.png", "00000003.txt", "00000003.cls", "00000004.png", "00000004.txt",
                                  "00000004.cls", "00000005.jpg", "00000005.txt", "00000005.cls"]  # .bmp -> .png

    # Same data, same bytes: the writer fixes member metadata.
    write_shards(data, tmp_path / "again", per_shard=3)
    assert (tmp_path / "again/train/train-000002.tar").read_bytes() == (tmp_path / "shards/train/train-000002.tar").read_bytes()


def test_shard_fingerprint_follows_the_shard_file(tmp_path: Path):
    write_shards(_generic(tmp_path / "generic"), tmp_path / "shards", per_shard=4)
    first = read_pairs(resolve_split(tmp_path / "shards", "train")).fingerprint()
    assert read_pairs(resolve_split(tmp_path / "shards", "train")).fingerprint() == first
    shard = tmp_path / "shards" / "train" / "train-000001.tar"
    os.utime(shard, ns=(shard.stat().st_atime_ns, shard.stat().st_mtime_ns + 10**9))
    assert read_pairs(resolve_split(tmp_path / "shards", "train")).fingerprint() != first


def test_shard_indexes_are_cached_on_disk_until_the_shard_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import clipping_edge.training.data.shards as shards

    write_shards(_generic(tmp_path / "generic"), tmp_path / "shards", per_shard=4)
    first = read_pairs(resolve_split(tmp_path / "shards", "train"))

    def no_scanning(*args, **kwargs):
        raise AssertionError("scanned again")

    shards._INDEX_CACHE.clear()
    monkeypatch.setattr(shards, "_scan", no_scanning)
    again = read_pairs(resolve_split(tmp_path / "shards", "train"))  # from the disk index alone
    assert again.pairs == first.pairs
    shard = tmp_path / "shards" / "train" / "train-000000.tar"
    os.utime(shard, ns=(shard.stat().st_atime_ns, shard.stat().st_mtime_ns + 10**9))
    with pytest.raises(AssertionError, match="scanned again"):
        read_pairs(resolve_split(tmp_path / "shards", "train"))


def test_the_training_dataset_reads_shard_members(tmp_path: Path):
    from clipping_edge.training.data.transforms import EvalTransform, ImageCaptionDataset

    write_shards(_generic(tmp_path / "generic"), tmp_path / "shards", per_shard=3)
    pairs = read_pairs(resolve_split(tmp_path / "shards", "train"))
    pixels, caption, index = ImageCaptionDataset(pairs.pairs, EvalTransform(16))[5]
    assert tuple(pixels.shape) == (3, 16, 16) and caption == "train caption number 5" and index == 5


def test_shard_layouts_and_brace_patterns(tmp_path: Path):
    flat = tmp_path / "flat"
    flat.mkdir()
    for split, n in (("train", 3), ("test", 1)):
        for k in range(n):
            _tar(flat / f"{split}-{k:06d}.tar", {f"{split}{k}.png": _png_bytes(k), f"{split}{k}.txt": f"{split} {k}".encode()})
    assert read_pairs(resolve_split(flat, "train")).captions == ["train 0", "train 1", "train 2"]  # named by split
    assert read_pairs(resolve_split(flat, "test")).captions == ["test 0"]
    with pytest.raises(ClippingEdgeError, match="none for val"):
        resolve_split(flat, "val")

    pattern = str(flat / "train-{000000..000001}.tar")
    assert expand_braces(pattern) == [str(flat / "train-000000.tar"), str(flat / "train-000001.tar")]
    assert read_pairs(resolve_split(pattern, "train")).captions == ["train 0", "train 1"]
    assert read_pairs(pattern).captions == ["train 0", "train 1"]  # read_pairs takes patterns directly too
    assert expand_braces("s-{a,b}-{8..10}.tar") == ["s-a-8.tar", "s-a-9.tar", "s-a-10.tar", "s-b-8.tar", "s-b-9.tar", "s-b-10.tar"]
    with pytest.raises(ClippingEdgeError, match=r"train-000003.tar .*3 of 6 missing"):
        resolve_split(str(flat / "train-{000000..000005}.tar"), "train")

    single = flat / "train-000002.tar"
    assert read_pairs(resolve_split(single, "test")).captions == ["train 2"]  # a single shard is its own split
    unnamed = tmp_path / "unnamed"
    unnamed.mkdir()
    _tar(unnamed / "part-a.tar", {"x.jpg": _png_bytes(1), "x.txt": b"an x"})
    assert read_pairs(resolve_split(unnamed, "test")).captions == ["an x"]


def test_incomplete_shard_keys_are_skipped_with_one_warning(tmp_path: Path):
    shard = _tar(tmp_path / "mixed.tar", {
        "a.jpg": _png_bytes(1), "a.txt": b"caption a",
        "b.png": _png_bytes(2),  # no caption
        "c.txt": b"caption c",  # no image
        "dir/d.webp": _png_bytes(3), "dir/d.json": json.dumps({"caption": "caption d", "label": "dee"}).encode(),
        "v1.0/e.png": _png_bytes(4), "v1.0/e.txt": b"caption e", "v1.0/e.cls": b"7",
        "f.seg.png": _png_bytes(5), "f.seg.txt": b"fields seg.png and seg.txt are neither image nor caption",
    })
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pairs = read_pairs(shard)
    assert len(caught) == 1 and "skipped 3 shard key(s)" in str(caught[0].message)
    assert pairs.captions == ["caption a", "caption d", "caption e"]
    assert [p.label for p in pairs.pairs] == [None, "dee", "7"]
    assert pairs.pairs[1].member.name == "dir/d.webp"

    _tar(tmp_path / "empty.tar", {"z.txt": b"only text"})
    with pytest.raises(ClippingEdgeError, match="no image-caption pairs"), pytest.warns(UserWarning, match="skipped 1"):
        read_pairs(tmp_path / "empty.tar")


def test_a_corrupt_shard_is_one_clear_error(tmp_path: Path):
    good = _tar(tmp_path / "good.tar", {f"{k}.png": _png_bytes(k) for k in range(3)} | {f"{k}.txt": b"x" for k in range(3)})
    raw = good.read_bytes()

    garbage = tmp_path / "garbage.tar"
    garbage.write_bytes(os.urandom(4096))
    truncated = tmp_path / "truncated.tar"
    second_header = 512 + -(-len(_png_bytes(0)) // 512) * 512
    truncated.write_bytes(raw[:second_header + 512 + 50])  # inside the second member's data
    damaged = tmp_path / "damaged.tar"
    damaged.write_bytes(raw[:second_header] + b"\xff" * 512 + raw[second_header + 512:])
    for path in (garbage, truncated, damaged):
        with pytest.raises(ClippingEdgeError, match=rf"{path.name} is not a readable tar shard .*re-write it"):
            read_pairs(path)


def test_mixtures_train_on_all_and_test_on_the_first(tmp_path: Path):
    a = _generic(tmp_path / "a", n_train=5, n_test=2)
    write_shards(_generic(tmp_path / "b_src", n_train=4, n_test=3), tmp_path / "b")
    spec = f"{a}+{tmp_path / 'b'}"
    train_source = resolve_split(spec, "train")
    assert isinstance(train_source, Mixture)
    train = read_pairs(train_source)
    parts = [read_pairs(resolve_split(a, "train")), read_pairs(resolve_split(tmp_path / "b", "train"))]
    assert train.captions == parts[0].captions + parts[1].captions and len(train) == 9
    assert train.root == parts[0].root and train.zero_shot.classes == ["cat", "dog"]
    assert train.fingerprint() == read_pairs(resolve_split(spec, "train")).fingerprint()
    assert train.fingerprint() not in {p.fingerprint() for p in parts}
    assert read_pairs(resolve_split(f"{tmp_path / 'b'}+{a}", "train")).fingerprint() != train.fingerprint()  # order counts
    assert read_pairs(resolve_split(spec, "test")).captions == read_pairs(resolve_split(a, "test")).captions
    assert [len(p) for p in read_pairs(train_source, limit=5).parts] == [3, 2]  # the limit is shared out
    with pytest.raises(ClippingEdgeError, match="empty part"):
        resolve_split(f"{a}+", "train")


# -- preparers --------------------------------------------------------------------------------------


def _idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


def _fashion_source(root: Path, per_class: dict[str, int]) -> Path:
    """IDX files whose every image encodes its (file, index) in its first pixels, to trace it after writing."""
    root.mkdir()
    for file_id, (upstream, n) in enumerate(per_class.items()):
        labels = np.arange(10 * n) % 10
        images = np.zeros((10 * n, 28, 28), np.uint8)
        images[:, 0, 0] = file_id
        images[:, 0, 1] = np.arange(10 * n)
        _idx(root / f"{upstream}-images-idx3-ubyte.gz", images)
        _idx(root / f"{upstream}-labels-idx1-ubyte.gz", labels)
    return root


def _rows(folder: Path) -> list[dict[str, str]]:
    with open(folder / "captions.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_prepare_fashion_mnist_from_idx_files(tmp_path: Path):
    source = _fashion_source(tmp_path / "idx", {"train": 10, "t10k": 3})
    done = prepare_fashion_mnist(tmp_path / "fm", source=source, seed=3, progress=False)
    assert done.counts == {"train": 90, "val": 10, "test": 30}
    traced = {}
    for split in ("train", "val", "test"):
        for row in _rows(tmp_path / "fm" / split):
            image = np.asarray(Image.open(tmp_path / "fm" / split / row["image"]))
            assert image.shape == (28, 28)
            file_id, index = int(image[0, 0]), int(image[0, 1])
            traced[file_id, index] = split
            assert row["label"] == done.classes[index % 10]  # label i is README class i
            assert any(p[p.index(" ") + 1:] in row["caption"] for p in json.loads((tmp_path / "fm/zeroshot.json").read_text())["synonyms"][row["label"]])
    assert len(traced) == 130  # every upstream image exactly once: the splits are disjoint
    assert all(split == "test" for (file_id, _), split in traced.items() if file_id == 1)  # t10k stays the test set
    assert sorted(i % 10 for (f, i), s in traced.items() if s == "val") == list(range(10))  # stratified
    zero_shot = json.loads((tmp_path / "fm" / "zeroshot.json").read_text())
    assert zero_shot["classes"][0] == "t-shirt/top" and zero_shot["classes"][-1] == "ankle boot" and zero_shot["templates"]

    again = prepare_fashion_mnist(tmp_path / "fm2", source=source, seed=3, progress=False)
    assert again.counts == done.counts
    assert (tmp_path / "fm2/val/captions.csv").read_bytes() == (tmp_path / "fm/val/captions.csv").read_bytes()
    other = prepare_fashion_mnist(tmp_path / "fm3", source=source, seed=4, limit_per_class=4, progress=False)
    assert other.counts == {"train": 30, "val": 10, "test": 30}
    assert read_pairs(resolve_split(tmp_path / "fm", "val")).zero_shot.classes == done.classes

    (source / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\x00\x00\x09\x01" + b"\x00" * 8))
    with pytest.raises(ClippingEdgeError, match="not an IDX file"):
        read_idx(source / "train-labels-idx1-ubyte.gz")


EMOJI_TEST_EXCERPT = """\
# group: Smileys & Emotion

# subgroup: face-smiling
1F600                                                  ; fully-qualified     # 😀 E1.0 grinning face
1F603                                                  ; fully-qualified     # 😃 E0.6 grinning face with big eyes
1F604                                                  ; fully-qualified     # 😄 E0.6 grinning face with smiling eyes
1F601                                                  ; fully-qualified     # 😁 E0.6 beaming face with smiling eyes
263A FE0F                                              ; fully-qualified     # ☺️ E0.6 smiling face
263A                                                   ; unqualified         # ☺ E0.6 smiling face

# group: People & Body

# subgroup: hand-fingers-open
1F44B                                                  ; fully-qualified     # 👋 E0.6 waving hand
1F44B 1F3FB                                            ; fully-qualified     # 👋🏻 E1.0 waving hand: light skin tone
1F44B 1F3FF                                            ; fully-qualified     # 👋🏿 E1.0 waving hand: dark skin tone
1F91A                                                  ; fully-qualified     # 🤚 E3.0 raised back of hand
1F590 FE0F                                             ; fully-qualified     # 🖐️ E0.7 hand with fingers splayed
1F590                                                  ; unqualified         # 🖐 E0.7 hand with fingers splayed
270B                                                   ; fully-qualified     # ✋ E0.6 raised hand
270B 1F3FD                                             ; fully-qualified     # ✋🏽 E1.0 raised hand: medium skin tone

# subgroup: person-role
1F469 200D 1F37C                                       ; fully-qualified     # 👩‍🍼 E13.0 woman feeding baby
1F469 1F3FB 200D 1F37C                                 ; fully-qualified     # 👩🏻‍🍼 E13.0 woman feeding baby: light skin tone
1F468 200D 2695 FE0F                                   ; fully-qualified     # 👨‍⚕️ E4.0 man health worker
1F9D1 200D 1F373                                       ; fully-qualified     # 🧑‍🍳 E12.1 cook

# group: Flags

# subgroup: country-flag
1F1EF 1F1F5                                            ; fully-qualified     # 🇯🇵 E0.6 flag: Japan
1F1EB 1F1F7                                            ; fully-qualified     # 🇫🇷 E0.6 flag: France
1F1EE 1F1F9                                            ; fully-qualified     # 🇮🇹 E0.6 flag: Italy

#EOF
"""


def _emoji_font():
    """The real font where it is installed; otherwise Pillow's built-in one draws a box per code point."""
    return None if NOTO_EMOJI.is_file() else ImageFont.load_default()


def _caption_split(root: Path) -> dict[str, tuple[str, str]]:
    return {row["caption"]: (split, row["label"]) for split in ("train", "val", "test") if (root / split).is_dir()
            for row in _rows(root / split)}


def test_prepare_emoji_from_emoji_test_txt(tmp_path: Path):
    source = tmp_path / "emoji-test.txt"
    source.write_text(EMOJI_TEST_EXCERPT, encoding="utf-8")
    done = prepare_emoji(tmp_path / "emoji", source=source, image_size=32, font=_emoji_font(), progress=False)
    assert done.counts == {"train": 7, "val": 4, "test": 4}  # 15 base emoji; each class has >= 3: one val, one test
    assert done.skipped == {"skin-tone variants": 4}
    assert done.classes == ["smiling face", "open hand", "person at work", "country flag"]
    captions = _caption_split(tmp_path / "emoji")
    assert any("woman feeding baby" in c for c in captions) and any("the flag of Japan" in c for c in captions)
    assert not any("skin tone" in c for c in captions)
    for label in done.classes:  # stratified: every class in every split
        assert {s for s, lab in captions.values() if lab == label} == {"train", "val", "test"}
    image = Image.open(tmp_path / "emoji" / "test" / "images" / "000000.png")
    assert image.size == (32, 32) and image.mode == "RGB" and np.asarray(image).min() < 200  # something is drawn

    prepare_emoji(tmp_path / "emoji2", source=source, image_size=32, font=_emoji_font(), progress=False)
    assert _caption_split(tmp_path / "emoji2") == captions  # deterministic

    tones = prepare_emoji(tmp_path / "tones", source=source, image_size=32, skin_tones=True, label="group",
                          font=_emoji_font(), progress=False)
    assert sum(tones.counts.values()) == 19 and tones.classes == ["smileys and emotion", "people and body", "flags"]
    split_of = {}
    for split in ("train", "val", "test"):
        for row in _rows(tmp_path / "tones" / split):
            base = row["caption"]
            for name in ("waving hand", "raised hand", "woman feeding baby"):
                if name in base:
                    split_of.setdefault(name, set()).add(split)
    assert all(len(s) == 1 for s in split_of.values()) and len(split_of) == 3  # variants share their base's split
    assert SKIN_TONES == frozenset(range(0x1F3FB, 0x1F400))

    with pytest.raises(ClippingEdgeError, match="fonts-noto-color-emoji"):
        prepare_emoji(tmp_path / "nofont", source=source, font=tmp_path / "missing.ttf", progress=False)


SVG = """<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"
     xmlns:cc="http://web.resource.org/cc/" xmlns:dc="http://purl.org/dc/elements/1.1/" width="10" height="10">
<metadata><rdf:RDF><cc:Work rdf:about="">
  <dc:title>{title}</dc:title><dc:description>{description}</dc:description>
  <dc:subject><rdf:Bag>{keywords}</rdf:Bag></dc:subject>
  <dc:creator><cc:Agent><dc:title>{creator}</dc:title></cc:Agent></dc:creator>
</cc:Work></rdf:RDF></metadata><rect width="10" height="10"/></svg>
"""


def _clipart(root: Path, rel: str, size: tuple[int, int], title: str, keywords: list[str], creator: str = "Jane Roe",
             description: str = "", svg: bool = True) -> None:
    png = root / "png" / rel
    png.parent.mkdir(parents=True, exist_ok=True)
    _noise(len(rel), size, "RGBA").save(png)
    if svg:
        path = (root / "svg" / rel).with_suffix(".svg")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(SVG.format(title=title, description=description, creator=creator,
                                   keywords="".join(f"<rdf:li>{k}</rdf:li>" for k in keywords)))


def test_prepare_openclipart_from_png_and_svg_metadata(tmp_path: Path):
    root = tmp_path / "openclipart"
    (root / "svg").mkdir(parents=True)
    for i, animal in enumerate(["black cat", "brown dog", "white horse", "grey mouse"]):
        _clipart(root, f"animals/mammals/{animal.replace(' ', '_')}_01.png", (40 + i, 30), animal.title(),
                 ["mammal", "Jane Roe", "hash", "animal"])
    for i, fruit in enumerate(["apple", "pear", "banana"]):
        _clipart(root, f"food/{fruit}_01.png", (30, 30), f"Clipart by Jane Roe - {fruit}", ["fruit"],
                 description="A ripe fruit" if i == 0 else "")
    _clipart(root, "food/bowl_03.png", (30, 30), "Homes Clipart", ["bowl", "Tea Maker"], creator="Someone Else")
    _clipart(root, "computer/mouse_01.png", (30, 30), "computer mouse", ["hardware"])  # a dropped category
    _clipart(root, "food/huge_01.png", (120, 100), "huge cake", ["cake"])  # over max_pixels below
    _clipart(root, "food/tiny_01.png", (8, 8), "tiny plum", ["plum"])
    _clipart(root, "food/orphan_01.png", (30, 30), "", [], svg=False)
    _clipart(root, "food/nameless_01.png", (30, 30), "", ["hash", "Jane Roe"])
    (root / "png" / "food" / "cat_link.png").symlink_to(root / "png/animals/mammals/black_cat_01.png")
    # An author name from another drawing's metadata is noise in this one's keywords too.
    _clipart(root, "food/tea_01.png", (30, 30), "cup of tea", ["drink", "Jane Roe"], creator="Tea Maker")

    done = prepare_openclipart(tmp_path / "oc", source=root, image_size=24, max_pixels=10_000, progress=False)
    assert done.skipped == {"dropped categories": 1, "duplicates": 1, "no svg metadata": 1,
                            "no title or keywords": 1, "over max pixels": 1, "under 16 px": 1}
    assert done.classes == ["animals", "food"] and sum(done.counts.values()) == 9
    captions = _caption_split(tmp_path / "oc")
    assert {lab for _, lab in captions.values()} == {"animals", "food"}
    text = " ".join(captions)
    for word in ("black cat", "brown dog", "apple", "pear", "banana", "bowl", "cup of tea", "a ripe fruit"):
        assert word in text
    for noise in ("jane roe", "clipart", "hash", "homes", "tea maker", "computer"):
        assert noise not in text.lower()
    for split in ("train", "val", "test"):
        for row in _rows(tmp_path / "oc" / split):
            assert Image.open(tmp_path / "oc" / split / row["image"]).size == (24, 24)
    zero_shot = json.loads((tmp_path / "oc" / "zeroshot.json").read_text())
    assert zero_shot["synonyms"]["animals"] == ["an animal", "animals"]

    (root / "svg").rename(root / "svg_gone")
    with pytest.raises(ClippingEdgeError, match="openclipart-svg"):
        prepare_openclipart(tmp_path / "oc2", source=root, progress=False)


def _stamp(root: Path, rel: str, description: str | None, size: tuple[int, int] = (30, 20), png: bool = True) -> None:
    """One Tux Paint stamp: <rel>.png (transparent RGBA) and <rel>.txt, English first, translations after."""
    base = root / rel
    base.parent.mkdir(parents=True, exist_ok=True)
    if png:
        _noise(len(rel), size, "RGBA").save(base.with_suffix(".png"))
    else:
        base.with_suffix(".svg").write_text("<svg/>")
    if description is not None:
        base.with_suffix(".txt").write_text(f"{description}\nfr.utf8=traduction.\nde.utf8=Übersetzung.\n", encoding="utf-8")


def test_prepare_tuxpaint_from_stamps(tmp_path: Path):
    root = tmp_path / "stamps"
    for animal in ("A frog.", "A blue gnu.", "A Tamworth pig.", "A cheetah."):
        _stamp(root, f"animals/{animal.split()[-1].strip('.').lower()}", animal)
    for i in range(3):  # one description in three styles: one group, one split
        _stamp(root, f"symbols/alphabets/style{i}/P", "The letter P.")
    for letter in "QRS":
        _stamp(root, f"symbols/alphabets/style0/{letter}", f"The letter {letter}.")
    _stamp(root, "clothes/glove", "A glove.  Warm   hands.")
    _stamp(root, "clothes/jacket", "A jacket.")
    _stamp(root, "clothes/scarf", "A very long scarf that goes on and on. " * 6)
    _stamp(root, "clothes/bowtie", "A bow tie.", png=False)  # SVG only
    _stamp(root, "clothes/nothing", "…")
    _noise(1, (30, 20), "RGBA").save(root / "clothes" / "glove_mirror.png")  # a flipped copy, no .txt of its own
    (root / "README.txt").write_text("not a stamp")

    done = prepare_tuxpaint(tmp_path / "tux", source=root, image_size=24, progress=False)
    assert done.classes == ["animals", "clothes", "symbols"] and sum(done.counts.values()) == 13
    assert done.skipped == {"svg only": 1, "mirror copies": 1, "no description": 1}
    rows = [(split, row) for split in ("train", "val", "test") if (tmp_path / "tux" / split).is_dir()
            for row in _rows(tmp_path / "tux" / split)]
    captions = [row["caption"] for _, row in rows]
    assert "A glove. Warm hands." in captions and "A frog." in captions
    assert not any("traduction" in c or "Übersetzung" in c for c in captions)
    assert "A very long scarf that goes on and on." in captions  # cut to its first sentence
    assert {split for split, row in rows if row["caption"] == "The letter P."} in ({"train"}, {"val"}, {"test"})
    assert sum(row["caption"] == "The letter P." for _, row in rows) == 3
    for split, row in rows:
        assert Image.open(tmp_path / "tux" / split / row["image"]).size == (24, 24)
    zero_shot = json.loads((tmp_path / "tux" / "zeroshot.json").read_text())
    assert zero_shot["synonyms"]["clothes"] == ["clothing", "something to wear"]

    with pytest.raises(ClippingEdgeError, match="tuxpaint-stamps-default"):
        prepare_tuxpaint(tmp_path / "tux2", source=tmp_path / "nowhere", progress=False)


def test_data_commands(tmp_path: Path, capsys: pytest.CaptureFixture):
    assert main(["data", "prepare", "fashion-mnist", "--out", str(tmp_path / "x"), "--source", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: Fashion-MNIST not found") and "\n" not in err
    assert "apt-get install -y --no-install-recommends dataset-fashion-mnist" in err and "--source PATH" in err
    assert not (tmp_path / "x").exists()

    assert main(["data", "prepare", "fashion-mnist", "--out", str(tmp_path / "x"), "--skin-tones"]) == 2
    assert "--skin-tones does not apply to fashion-mnist" in capsys.readouterr().err
    with pytest.raises(ClippingEdgeError, match="unknown dataset"):
        prepare("cifar", tmp_path / "x")

    source = _fashion_source(tmp_path / "idx", {"train": 3, "t10k": 1})
    assert main(["data", "prepare", "fashion-mnist", "--out", str(tmp_path / "fm"), "--source", str(source)]) == 0
    out = capsys.readouterr().out
    from clipping_edge.shell import command_name

    # the next command as this shell runs it (here, in pytest: the module form)
    assert "train 20, val 10, test 10 pairs; 10 classes" in out and f"{command_name()} train --data {tmp_path / 'fm'}" in out

    assert main(["data", "shard", "--data", str(tmp_path / "fm"), "--out", str(tmp_path / "shards"), "--per-shard", "8"]) == 0
    assert "train 20 pairs in 3 shard(s)" in capsys.readouterr().out
    assert len(read_pairs(resolve_split(tmp_path / "shards", "val"))) == 10
