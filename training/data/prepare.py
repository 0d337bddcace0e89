"""`clipping-edge data prepare NAME`: real image-text sets that ship in Debian packages, written in the
generic format (train/val/test folders with images/ + captions.csv, and zeroshot.json).

Each preparer reads the upstream file formats, so a user's own download works through `source`:

- fashion-mnist: the four IDX files (`{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`); the
  upstream test set stays the test split, the validation split is drawn from the training set.
- emoji: Unicode's `emoji-test.txt` (fully-qualified lines), rendered with Noto Color Emoji;
  labels are the CLDR subgroups (or groups).
- openclipart: `png/<category>/...png` with titles, keywords and descriptions from the RDF
  metadata of the matching `svg/<category>/...svg`; labels are the top-level categories.
- tuxpaint: Tux Paint's stamps, `<category>/.../<stamp>.png` beside `<stamp>.txt`, whose first line is
  the stamp's English description; labels are the top-level categories.

Splits are drawn by a seed, stratified by label; everything is written atomically.
"""

from __future__ import annotations

import csv
import gzip
import inspect
import random
import re
import shutil
import struct
import time
import warnings
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps

from clipping_edge.errors import ClippingEdgeError

SPLITS = ("train", "val", "test")


@dataclass
class Sample:
    label: str
    caption: str
    load: Callable[[], Image.Image | None]  # decoded only when written: some sources are too big to hold
    group: str = ""  # samples of one group share a split (an emoji and its skin-tone variants)
    split: str | None = None  # a split fixed upstream (Fashion-MNIST's test set)


@dataclass
class Prepared:
    name: str
    out: Path
    counts: dict[str, int]
    classes: list[str]
    skipped: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0  # reading the source and writing, set by prepare()


def _missing(what: str, path: Path, packages: str) -> ClippingEdgeError:
    return ClippingEdgeError(f"{what} not found at {path}: install it (apt-get install -y --no-install-recommends "
                             f"{packages}) or pass --source PATH")


def _with_article(phrase: str) -> str:
    """'a grinning face', 'an ankle boot'; plural heads ('folded hands') and 'the ...' take none."""
    head = re.split(r" with | in | on |[,:(]", phrase)[0].split()
    last = head[-1].lower() if head else ""
    if not phrase[:1].isalpha() or phrase.startswith("the ") or (last.endswith("s") and not last.endswith(("ss", "us", "is"))):
        return phrase
    return ("an " if phrase[0].lower() in "aeiou" else "a ") + phrase


def _limit(samples: list[Sample], per_class: int | None) -> list[Sample]:
    if per_class is None:
        return samples
    seen: dict[str, int] = {}
    kept = []
    for s in samples:
        if seen.get(s.label, 0) < per_class:
            seen[s.label] = seen.get(s.label, 0) + 1
            kept.append(s)
    return kept


def assign_splits(samples: list[Sample], seed: int, val: float = 0.1, test: float = 0.1) -> list[str]:
    """A split per sample: fixed ones kept, the rest by group, stratified by label, fixed by `seed`."""
    groups: dict[str, dict[str, None]] = {}  # label -> its groups in first-seen order
    for i, s in enumerate(samples):
        if s.split is None:
            groups.setdefault(s.label, {})[s.group or f"#{i}"] = None
    where: dict[tuple[str, str], str] = {}
    for label, members in groups.items():
        order = list(members)
        random.Random(f"{seed}/{label}").shuffle(order)
        # Round, but give any class with three or more groups one test and one validation group:
        # otherwise small classes would never be evaluated.
        n = len(order)
        n_test = max(round(n * test), 1 if test > 0 and n >= 3 else 0)
        n_val = max(round(n * val), 1 if val > 0 and n >= 3 else 0)
        for k, g in enumerate(order):
            where[label, g] = "test" if k < n_test else "val" if k < n_test + n_val else "train"
    return [s.split or where[s.label, s.group or f"#{i}"] for i, s in enumerate(samples)]


def write_generic(out: str | Path, name: str, samples: list[Sample], zero_shot: dict, seed: int, info: dict,
                  val: float = 0.1, test: float = 0.1, progress: bool = True, force: bool = False) -> Prepared:
    """Split `samples` and write them as PNGs + captions.csv per split, zeroshot.json and dataset.json."""
    from clipping_edge.atomic import atomic_directory, write_json_atomic

    from ..progress import progress_bar

    if not samples:
        raise ClippingEdgeError(f"{name}: no samples to write: check --source and --limit-per-class")
    splits = assign_splits(samples, seed, val, test)
    counts = dict.fromkeys(SPLITS, 0)
    unreadable = 0
    out = Path(out)
    with atomic_directory(out, "dataset", inputs=[info.get("source")], force=force) as tmp:
        files, writers = {}, {}
        try:
            for split in SPLITS:
                (tmp / split / "images").mkdir(parents=True)
                files[split] = open(tmp / split / "captions.csv", "w", newline="", encoding="utf-8")
                writers[split] = csv.writer(files[split])
                writers[split].writerow(["image", "caption", "label"])
            for sample, split in progress_bar(zip(samples, splits), desc=f"writing {name}", total=len(samples),
                                              disable=not progress):
                image = sample.load()
                if image is None:
                    unreadable += 1
                    continue
                rel = f"images/{counts[split]:06d}.png"
                image.save(tmp / split / rel)
                writers[split].writerow([rel, sample.caption, sample.label])
                counts[split] += 1
        finally:
            for f in files.values():
                f.close()
        for split in SPLITS:
            if counts[split] == 0:  # an empty captions.csv would fail to read: leave the split out
                shutil.rmtree(tmp / split)
        write_json_atomic(tmp / "zeroshot.json", zero_shot)
        write_json_atomic(tmp / "dataset.json", {"name": name, "seed": seed, "counts": counts, **info})
    skipped = {k: v for k, v in info.get("skipped", {}).items() if v}
    if unreadable:
        skipped["unreadable"] = unreadable
    return Prepared(name, out, counts, list(zero_shot["classes"]), skipped)


# -- Fashion-MNIST ----------------------------------------------------------------------------------

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
# Upstream README's class names, in label order, with the phrases captions and prompts use.
FASHION_CLASSES: dict[str, list[str]] = {
    "t-shirt/top": ["a t-shirt", "a top", "a tee"],
    "trouser": ["a pair of trousers", "a pair of pants"],
    "pullover": ["a pullover", "a sweater", "a jumper"],
    "dress": ["a dress"],
    "coat": ["a coat", "a jacket"],
    "sandal": ["a sandal"],
    "shirt": ["a shirt", "a button-up shirt"],
    "sneaker": ["a sneaker", "a trainer", "a running shoe"],
    "bag": ["a bag", "a handbag", "a purse"],
    "ankle boot": ["an ankle boot", "a boot"],
}
FASHION_CAPTIONS = ["a photo of {}.", "a black and white photo of {}.", "a low resolution photo of {}.",
                    "a grayscale picture of {}.", "{} on a black background.", "a small product photo of {}.", "{}."]
FASHION_TEMPLATES = ["a photo of {}.", "a black and white photo of {}.", "a low resolution photo of {}.", "{}."]


def read_idx(path: Path) -> np.ndarray:
    """An IDX file of unsigned bytes (gzipped or not) as an array of its declared shape."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise ClippingEdgeError(f"{path} is a damaged gzip file ({exc}): download it again") from None
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] != 0x08 or raw[3] == 0:
        raise ClippingEdgeError(f"{path} is not an IDX file of unsigned bytes (magic {raw[:4].hex()}): pass the "
                                "upstream *-ubyte.gz files")
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    data = np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ClippingEdgeError(f"{path} holds {data.size} bytes of data for shape {dims}: it is truncated, download it again")
    return data.reshape(dims)


def _idx_file(source: Path, stem: str) -> Path:
    for name in (f"{stem}.gz", stem):
        if (source / name).is_file():
            return source / name
    raise _missing(f"Fashion-MNIST ({stem}.gz)", source, "dataset-fashion-mnist")


def _gray(image: np.ndarray) -> Callable[[], Image.Image]:
    return lambda: Image.fromarray(image, "L")


def prepare_fashion_mnist(out: str | Path, source: str | Path | None = None, seed: int = 0,
                          limit_per_class: int | None = None, progress: bool = True, force: bool = False) -> Prepared:
    """Fashion-MNIST as 28x28 grayscale PNGs. `limit_per_class` caps each upstream file per class."""
    source = Path(source) if source else FASHION_MNIST_DIR
    if not source.is_dir():
        raise _missing("Fashion-MNIST", source, "dataset-fashion-mnist")
    names = list(FASHION_CLASSES)
    samples: list[Sample] = []
    for upstream, split in (("train", None), ("t10k", "test")):
        images = read_idx(_idx_file(source, f"{upstream}-images-idx3-ubyte"))
        labels = read_idx(_idx_file(source, f"{upstream}-labels-idx1-ubyte"))
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels) or labels.max(initial=0) >= len(names):
            raise ClippingEdgeError(f"{source}: {upstream} images {images.shape} and labels {labels.shape} do not match "
                                    "(expected N x 28 x 28 and N labels 0-9): pass the upstream files")
        part = []
        for i, y in enumerate(labels.tolist()):
            rng = random.Random(f"{seed}/{upstream}/{i}")
            phrase = rng.choice(FASHION_CLASSES[names[y]])
            part.append(Sample(names[y], rng.choice(FASHION_CAPTIONS).format(phrase), _gray(images[i]), split=split))
        samples += _limit(part, limit_per_class)
    zero_shot = {"classes": names, "templates": FASHION_TEMPLATES, "synonyms": FASHION_CLASSES}
    info = {"source": str(source), "upstream": "https://github.com/zalandoresearch/fashion-mnist (MIT)",
            "limit_per_class": limit_per_class}
    # The upstream test set is the test split; validation comes out of the upstream training set.
    return write_generic(out, "fashion-mnist", samples, zero_shot, seed, info, val=0.1, test=0.0, progress=progress, force=force)


# -- emoji ------------------------------------------------------------------------------------------

EMOJI_TEST = Path("/usr/share/unicode/emoji/emoji-test.txt")
NOTO_EMOJI = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
NOTO_EMOJI_SIZE = 109  # the font is a bitmap font with one strike: it opens at this size only
SKIN_TONES = frozenset(range(0x1F3FB, 0x1F400))
EMOJI_LINE = re.compile(r"^([0-9A-Fa-f ]+?)\s*;\s*fully-qualified\s*#\s*\S+\s+(?:E\d+\.\d+\s+)?(.+?)\s*$")
# CLDR subgroup names that do not read as a class name once the hyphens are spaces.
EMOJI_SUBGROUPS = {
    "face-smiling": "smiling face", "face-affection": "affectionate face", "face-tongue": "face with tongue",
    "face-hand": "face with hand", "face-neutral-skeptical": "neutral or skeptical face", "face-sleepy": "sleepy face",
    "face-unwell": "unwell face", "face-hat": "face with hat", "face-glasses": "face with glasses",
    "face-concerned": "concerned face", "face-negative": "angry face", "face-costume": "costume face",
    "emotion": "emotion symbol", "hand-fingers-open": "open hand", "hand-fingers-partial": "hand sign",
    "hand-single-finger": "pointing hand", "hand-fingers-closed": "closed hand", "hand-prop": "hand holding something",
    "body-parts": "body part", "person-gesture": "person gesturing", "person-role": "person at work",
    "person-fantasy": "fantasy character", "person-activity": "person doing something", "person-sport": "person doing sport",
    "person-resting": "person resting", "person-symbol": "person symbol", "animal-mammal": "mammal", "animal-bird": "bird",
    "animal-amphibian": "amphibian", "animal-reptile": "reptile", "animal-marine": "sea animal", "animal-bug": "bug",
    "plant-flower": "flower", "plant-other": "plant", "food-fruit": "fruit", "food-vegetable": "vegetable",
    "food-prepared": "prepared food", "food-asian": "asian food", "food-marine": "seafood", "food-sweet": "sweet food",
    "place-map": "map", "place-geographic": "landscape", "place-building": "building", "place-religious": "religious building",
    "place-other": "place", "transport-ground": "land vehicle", "transport-water": "boat", "transport-air": "aircraft",
    "hotel": "hotel item", "time": "clock", "event": "celebration", "award-medal": "award", "sport": "sports equipment",
    "sound": "sound symbol", "music": "music symbol", "book-paper": "book or paper", "writing": "writing tool",
    "office": "office supply", "science": "science item", "medical": "medical item", "household": "household item",
    "other-object": "object", "religion": "religious symbol", "zodiac": "zodiac sign", "av-symbol": "audio and video symbol",
    "gender": "gender symbol", "math": "math symbol", "punctuation": "punctuation mark", "currency": "currency symbol",
    "other-symbol": "symbol", "alphanum": "letter or number", "geometric": "geometric shape",
}
EMOJI_CAPTIONS = ["an emoji of {a}.", "{n} emoji.", "an emoji showing {a}.", "emoji: {n}.", "{a}, drawn as an emoji.",
                  "{a}, one of the {c} emoji."]
EMOJI_TEMPLATES = ["{} emoji.", "emoji: {}.", "an emoji from the {} category.", "an emoji of the {} kind."]


@dataclass(frozen=True)
class Emoji:
    codepoints: tuple[int, ...]
    name: str
    group: str
    subgroup: str

    @property
    def text(self) -> str:
        return "".join(map(chr, self.codepoints))

    @property
    def base(self) -> tuple[int, ...]:
        """The emoji without skin tones or presentation selectors: what its variants share."""
        return tuple(c for c in self.codepoints if c not in SKIN_TONES and c != 0xFE0F)


def read_emoji_test(path: Path) -> list[Emoji]:
    """The fully-qualified emoji of an emoji-test.txt, with their group and subgroup, in file order."""
    emoji, group, subgroup = [], "", ""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# group:"):
            group = line.partition(":")[2].strip()
        elif line.startswith("# subgroup:"):
            subgroup = line.partition(":")[2].strip()
        elif (match := EMOJI_LINE.match(line)):
            emoji.append(Emoji(tuple(int(c, 16) for c in match.group(1).split()), match.group(2), group, subgroup))
    if not emoji:
        raise ClippingEdgeError(f"{path} has no fully-qualified emoji lines: pass Unicode's emoji-test.txt")
    return emoji


def readable_subgroup(name: str) -> str:
    return EMOJI_SUBGROUPS.get(name, name.replace("-", " ").replace("&", "and"))


def readable_group(name: str) -> str:
    return name.lower().replace("&", "and")


def emoji_phrase(name: str) -> str:
    """CLDR name -> caption phrase: 'flag: Japan' -> 'the flag of Japan', 'x: medium skin tone' -> 'x, medium skin tone'."""
    head, sep, tail = name.partition(": ")
    if not sep:
        return name
    if head == "flag":
        return f"the flag of {tail}"
    if head == "keycap":
        return f"keycap {tail}"
    return f"{head}, {tail}"


def render_emoji(text: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont, size: int) -> Image.Image | None:
    """The emoji centred on a white square with a margin, `size` px; None when the font draws nothing."""
    probe = ImageDraw.Draw(Image.new("RGBA", (1, 1)))
    left, top, right, bottom = probe.textbbox((0, 0), text, font=font, embedded_color=True)
    w, h = right - left, bottom - top
    if w <= 0 or h <= 0:
        return None
    side = max(w, h)
    pad = max(1, side // 8)
    canvas = Image.new("RGBA", (side + 2 * pad, side + 2 * pad), (255, 255, 255, 0))
    ImageDraw.Draw(canvas).text((pad + (side - w) // 2 - left, pad + (side - h) // 2 - top), text, font=font,
                                embedded_color=True, fill=(0, 0, 0, 255))
    if canvas.getbbox() is None:
        return None
    white = Image.new("RGBA", canvas.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, canvas).convert("RGB").resize((size, size), Image.Resampling.LANCZOS)


def _open_emoji_font(font: ImageFont.FreeTypeFont | ImageFont.ImageFont | str | Path | None):
    if font is not None and not isinstance(font, (str, Path)):
        return font
    path = Path(font) if font else NOTO_EMOJI
    if not path.is_file():
        raise ClippingEdgeError(f"emoji font not found at {path}: install it (apt-get install -y --no-install-recommends "
                                "fonts-noto-color-emoji) or pass --font PATH")
    try:
        return ImageFont.truetype(str(path), NOTO_EMOJI_SIZE)
    except OSError as exc:
        raise ClippingEdgeError(f"{path} does not open at size {NOTO_EMOJI_SIZE} ({exc}): pass Noto Color Emoji "
                                "with --font") from None


def prepare_emoji(out: str | Path, source: str | Path | None = None, seed: int = 0, image_size: int = 96,
                  skin_tones: bool = False, label: str = "subgroup", limit_per_class: int | None = None,
                  font: ImageFont.FreeTypeFont | ImageFont.ImageFont | str | Path | None = None,
                  progress: bool = True, force: bool = False) -> Prepared:
    """Every fully-qualified emoji rendered to `image_size` px, captioned from its CLDR name.

    Skin-tone variants are near-duplicates of their base: by default only the base is kept; with
    `skin_tones` all are, and each base's variants share its split, so none leak into the test split."""
    if label not in ("subgroup", "group"):
        raise ClippingEdgeError(f"emoji label {label!r} is unknown: use subgroup or group")
    source = Path(source) if source else EMOJI_TEST
    if not source.is_file():
        raise _missing("emoji-test.txt", source, "unicode-data")
    emoji = read_emoji_test(source)
    font = _open_emoji_font(font)
    readable = readable_subgroup if label == "subgroup" else readable_group
    classes: dict[str, None] = {}
    samples = []
    dropped = 0
    for e in emoji:
        if not skin_tones and SKIN_TONES.intersection(e.codepoints):
            dropped += 1
            continue
        cls = readable(e.subgroup if label == "subgroup" else e.group)
        classes[cls] = None
        rng = random.Random(f"{seed}/{e.text}")
        phrase = emoji_phrase(e.name)
        caption = rng.choice(EMOJI_CAPTIONS).format(a=_with_article(phrase), n=phrase, c=cls)
        samples.append(Sample(cls, caption, lambda text=e.text: render_emoji(text, font, image_size),
                              group=" ".join(f"{c:X}" for c in e.base)))
    samples = _limit(samples, limit_per_class)
    zero_shot = {"classes": [c for c in classes if any(s.label == c for s in samples)], "templates": EMOJI_TEMPLATES,
                 "synonyms": {}}
    font_path = getattr(font, "path", None)  # a font loaded from bytes has a buffer here, not a path
    info = {"source": str(source), "font": str(font_path) if isinstance(font_path, (str, Path)) else type(font).__name__,
            "image_size": image_size,
            "label": label, "skin_tones": skin_tones, "limit_per_class": limit_per_class,
            "skipped": {"skin-tone variants": dropped}}
    return write_generic(out, "emoji", samples, zero_shot, seed, info, progress=progress, force=force)


# -- Openclipart ------------------------------------------------------------------------------------

OPENCLIPART_DIR = Path("/usr/share/openclipart")
# Mostly desktop icons, geometric primitives and uncategorised drawings: noise for captions and classes.
OPENCLIPART_DROP = ("computer", "shapes", "unsorted")
OPENCLIPART_CLASSES: dict[str, list[str]] = {
    "animals": ["an animal", "animals"], "buildings": ["a building", "a house"], "buttons": ["a button"],
    "containers": ["a container", "a box"], "decorations": ["a decoration", "an ornament"],
    "education": ["education", "a book"], "electronics": ["an electronic device", "electronics"],
    "food": ["food", "something to eat or drink"], "geography": ["a map", "geography"], "logos": ["a logo"],
    "office": ["office supplies", "an office item"], "people": ["a person", "people"],
    "plants": ["a plant", "a flower or a tree"], "recreation": ["a game, a toy or a sport", "a holiday", "recreation"],
    "science": ["science", "a science experiment"], "signs and symbols": ["a sign", "a symbol", "a flag"],
    "special": ["a pattern", "a design template"], "tools": ["a tool"],
    "transportation": ["a vehicle", "transportation", "a road sign"],
}
OPENCLIPART_CAPTIONS = ["clip art of {}.", "a drawing of {}.", "an illustration of {}.", "{}.", "clip art: {}."]
OPENCLIPART_TEMPLATES = ["clip art of {}.", "a drawing of {}.", "an illustration of {}.", "{}."]
# Keywords that say nothing about the picture.
_NOISE_KEYWORDS = {"", "hash", "unsorted", "clip art", "clipart", "openclipart", "image", "media", "public domain",
                   "svg", "png", "none", "icon", "icons", "externalsource", "remix"}
_NS = {"rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#", "dc": "http://purl.org/dc/elements/1.1/",
       "cc": "http://web.resource.org/cc/"}
_METADATA = re.compile(r"<metadata\b.*?</metadata>", re.S)


@dataclass
class ClipartMeta:
    title: str = ""
    description: str = ""
    keywords: list[str] = field(default_factory=list)
    creator: str = ""


def read_svg_metadata(path: Path) -> ClipartMeta:
    """Title, description, keywords and creator from an SVG's RDF metadata; empty when it has none."""
    match = _METADATA.search(path.read_text(encoding="utf-8", errors="replace"))
    if not match:
        return ClipartMeta()
    # The prefixes are declared on the <svg> element: declare them again on the fragment we parse.
    declared = " ".join(f'xmlns:{k}="{v}"' for k, v in _NS.items())
    fragment = re.sub(r"^<metadata\b[^>]*>", f"<metadata {declared}>", match.group(0), count=1)
    try:
        work = ET.fromstring(fragment).find(".//cc:Work", _NS)
    except ET.ParseError:
        return ClipartMeta()
    if work is None:
        return ClipartMeta()
    return ClipartMeta(title=(work.findtext("dc:title", "", _NS) or "").strip(),
                       description=(work.findtext("dc:description", "", _NS) or "").strip(),
                       keywords=[(li.text or "").strip() for li in work.findall("dc:subject/rdf:Bag/rdf:li", _NS)],
                       creator=(work.findtext("dc:creator/cc:Agent/dc:title", "", _NS) or "").strip())


def _clean_text(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("_", " ").replace("|", ",")).strip(" .,;-").lower()


def clean_title(title: str, creator: str) -> str:
    """A title as caption text, or '' for one that names a collection, an author or an address."""
    title = re.sub(r"^\s*clip ?art by .*? - ", "", title, flags=re.I)
    if " " not in title.strip():  # slug-like: 'arrow-left-red'
        title = title.replace("-", " ")
    title = re.sub(r"[\s#]*\d+$", "", _clean_text(title))  # 'boat1', 'book 01', 'blueman#203': file numbering
    if "@" in title or (creator and title == creator.lower()) or \
            re.search(r"(clip ?art|icon ?set|icons|theme|collection)$", title) or not re.search(r"[a-z]", title):
        return ""
    return title


def clean_keywords(keywords: list[str], creator: str, authors: set[str]) -> list[str]:
    """Keywords without author names, addresses and filler words, deduplicated, in order."""
    creator_words = set(re.findall(r"[a-z]+", creator.lower()))
    kept: dict[str, None] = {}
    for kw in keywords:
        kw = _clean_text(kw)
        words = set(re.findall(r"[a-z]+", kw))
        if kw in _NOISE_KEYWORDS or re.search(r"@|0x[0-9a-f]+", kw) or kw in authors or (words and creator_words and words <= creator_words):
            continue
        kept[kw] = None
    return list(kept)


def _clipart_image(path: Path, size: int) -> Callable[[], Image.Image | None]:
    def load() -> Image.Image | None:
        from clipping_edge.preprocess import load_image

        try:
            image = load_image(path)  # transparency over white, as the runtime does
        except ClippingEdgeError:
            return None
        if max(image.size) > 4 * size:  # a cheap reduce first: one LANCZOS pass over 40 Mpx is slow
            image.thumbnail((4 * size, 4 * size), Image.Resampling.LANCZOS, reducing_gap=2.0)
        return ImageOps.pad(image, (size, size), Image.Resampling.LANCZOS, color=(255, 255, 255))

    return load


def prepare_openclipart(out: str | Path, source: str | Path | None = None, seed: int = 0, image_size: int = 128,
                        max_pixels: int = 40_000_000, limit_per_class: int | None = None,
                        progress: bool = True, force: bool = False) -> Prepared:
    """Openclipart PNGs padded to `image_size` px squares, captioned from their SVG's title and keywords,
    labelled by category. PNGs over `max_pixels` (some hold 600 Mpx) or under 16 px a side are skipped."""
    source = Path(source) if source else OPENCLIPART_DIR
    png_root, svg_root = source / "png", source / "svg"
    if not png_root.is_dir():
        raise _missing("Openclipart PNGs (png/<category>/)", png_root, "openclipart-png openclipart-svg")
    if not svg_root.is_dir():
        raise _missing("Openclipart SVGs with the titles and keywords (svg/<category>/)", svg_root, "openclipart-svg")
    skipped = dict.fromkeys(("dropped categories", "duplicates", "no svg metadata", "no title or keywords",
                             "over max pixels", "under 16 px", "unreadable"), 0)
    # Real files before links: a drawing linked into several categories counts once, in its own.
    files = sorted(png_root.rglob("*.png"), key=lambda p: (p.is_symlink(), str(p)))
    found: list[tuple[Path, str, ClipartMeta]] = []
    seen: set[Path] = set()
    for png in files:
        rel = png.relative_to(png_root)
        if len(rel.parts) < 2 or rel.parts[0] in OPENCLIPART_DROP:
            skipped["dropped categories"] += 1
            continue
        real = png.resolve()
        if real in seen:
            skipped["duplicates"] += 1
            continue
        seen.add(real)
        svg = svg_root / rel.with_suffix(".svg")
        meta = read_svg_metadata(svg) if svg.is_file() else None
        if meta is None or not (meta.title or meta.keywords):
            skipped["no svg metadata"] += 1
            continue
        found.append((png, rel.parts[0].replace("_", " "), meta))
    authors = {m.creator.lower() for _, _, m in found if m.creator}

    samples = []
    for png, label, meta in found:
        title = clean_title(meta.title, meta.creator)
        keywords = clean_keywords(meta.keywords, meta.creator, authors)
        main = title or (keywords[0] if keywords else "")
        if not main:
            skipped["no title or keywords"] += 1
            continue
        try:
            with warnings.catch_warnings():  # the header only: its size decides, the pixels are not decoded
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(png) as im:
                    w, h = im.size
        except Image.DecompressionBombError:
            w = h = max_pixels
        except OSError:
            skipped["unreadable"] += 1
            continue
        if w * h > max_pixels:
            skipped["over max pixels"] += 1
            continue
        if min(w, h) < 16:
            skipped["under 16 px"] += 1
            continue
        rng = random.Random(f"{seed}/{png.relative_to(png_root)}")
        extras = [k for k in keywords if k not in main][:3]
        body = main + (", " + ", ".join(extras) if extras and rng.random() < 0.7 else "")
        caption = rng.choice(OPENCLIPART_CAPTIONS).format(body)
        description = _clean_text(meta.description)
        if 3 <= len(description) <= 120 and not re.search(r"@|https?:|www\.", description) and description != main:
            caption += f" {description}."
        samples.append(Sample(label, caption, _clipart_image(png, image_size)))
    samples = _limit(samples, limit_per_class)
    classes = sorted({s.label for s in samples})
    zero_shot = {"classes": classes, "templates": OPENCLIPART_TEMPLATES,
                 "synonyms": {c: OPENCLIPART_CLASSES[c] for c in classes if c in OPENCLIPART_CLASSES}}
    info = {"source": str(source), "image_size": image_size, "max_pixels": max_pixels,
            "limit_per_class": limit_per_class, "dropped_categories": list(OPENCLIPART_DROP), "skipped": skipped,
            "license": "public domain (Openclipart)"}
    return write_generic(out, "openclipart", samples, zero_shot, seed, info, progress=progress, force=force)


# -- Tux Paint stamps -------------------------------------------------------------------------------

TUXPAINT_DIR = Path("/usr/share/tuxpaint/stamps")
TUXPAINT_CLASSES: dict[str, list[str]] = {
    "animals": ["an animal", "animals"], "clothes": ["clothing", "something to wear"], "food": ["food"],
    "hobbies": ["a hobby", "a musical instrument or a game"], "household": ["a household item", "a tool"],
    "medical": ["a medical item"], "military": ["a military vehicle", "a soldier"],
    "naturalforces": ["a force of nature", "weather"], "people": ["a person", "people"], "plants": ["a plant", "a flower"],
    "seasonal": ["a holiday item", "a seasonal decoration"], "space": ["space", "a planet or a rocket"],
    "sports": ["sports equipment", "a sport"], "symbols": ["a symbol", "a letter, a number or a sign"],
    "town": ["a building", "a town", "a road sign"], "vehicles": ["a vehicle"],
}
TUXPAINT_TEMPLATES = ["a picture of {}.", "a drawing of {}.", "clip art of {}.", "{}."]
TUXPAINT_MAX_CAPTION = 160  # characters; a longer text is cut to its first sentence


def tuxpaint_caption(text: str) -> str:
    """A stamp's English description (the first line of its .txt; the others are translations) as a caption."""
    first = re.sub(r"\s+", " ", text.splitlines()[0] if text.strip() else "").strip()
    if len(first) > TUXPAINT_MAX_CAPTION:
        first = re.split(r"(?<=[.!?])\s", first, maxsplit=1)[0][:TUXPAINT_MAX_CAPTION]
    return first


def prepare_tuxpaint(out: str | Path, source: str | Path | None = None, seed: int = 0, image_size: int = 128,
                     limit_per_class: int | None = None, progress: bool = True, force: bool = False) -> Prepared:
    """Tux Paint's stamps (clip art and photos, each with a hand-written English description) padded to
    `image_size` px squares, labelled by top-level category (animals, clothes, food, ...). Stamps drawn only as
    SVG are skipped (no SVG renderer is assumed), as are `_mirror` copies; stamps with the same description
    share a split, so "The letter P." in two styles never sits in train and test at once."""
    source = Path(source) if source else TUXPAINT_DIR
    if not source.is_dir():
        raise _missing("Tux Paint stamps (<category>/.../<stamp>.txt + .png)", source, "tuxpaint-stamps-default")
    skipped = dict.fromkeys(("svg only", "mirror copies", "no description"), 0)
    samples = []
    for txt in sorted(source.rglob("*.txt")):
        rel = txt.relative_to(source)
        png = txt.with_suffix(".png")
        if len(rel.parts) < 2:
            continue  # a read-me beside the categories, not a stamp
        if not png.is_file():
            skipped["svg only"] += txt.with_suffix(".svg").is_file()
            continue
        caption = tuxpaint_caption(txt.read_text(encoding="utf-8", errors="replace"))
        if not re.search(r"[A-Za-z]", caption):
            skipped["no description"] += 1
            continue
        samples.append(Sample(rel.parts[0], caption, _clipart_image(png, image_size), group=caption.lower()))
    skipped["mirror copies"] = sum(1 for p in source.rglob("*_mirror.png"))
    samples = _limit(samples, limit_per_class)
    classes = sorted({s.label for s in samples})
    zero_shot = {"classes": classes, "templates": TUXPAINT_TEMPLATES,
                 "synonyms": {c: TUXPAINT_CLASSES[c] for c in classes if c in TUXPAINT_CLASSES}}
    info = {"source": str(source), "image_size": image_size, "limit_per_class": limit_per_class, "skipped": skipped,
            "license": "GPL-2 (Tux Paint stamps, Debian package copyright)"}
    return write_generic(out, "tuxpaint", samples, zero_shot, seed, info, progress=progress, force=force)


PREPARERS: dict[str, Callable[..., Prepared]] = {
    "fashion-mnist": prepare_fashion_mnist,
    "emoji": prepare_emoji,
    "openclipart": prepare_openclipart,
    "tuxpaint": prepare_tuxpaint,
}


def prepare(name: str, out: str | Path, **options) -> Prepared:
    """Run the preparer called `name`; options it does not take are an error, not silently ignored."""
    if name not in PREPARERS:
        raise ClippingEdgeError(f"unknown dataset {name!r}: choose one of {', '.join(PREPARERS)}")
    preparer = PREPARERS[name]
    accepted = set(inspect.signature(preparer).parameters)
    unknown = sorted(set(options) - accepted)
    if unknown:
        flags = ", ".join("--" + k.replace("_", "-") for k in unknown)
        raise ClippingEdgeError(f"{flags} does not apply to {name}: drop it")
    from clipping_edge.atomic import check_replaceable

    # Before reading thousands of source files: a refusal should cost nothing.
    check_replaceable(out, "dataset", [options.get("source")], options.get("force", False))
    start = time.perf_counter()
    done = preparer(out, **options)
    done.seconds = time.perf_counter() - start
    return done
