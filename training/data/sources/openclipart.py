"""openclipart: `png/<category>/...png` with titles, keywords and descriptions from the RDF metadata of the
matching `svg/<category>/...svg`; labels are the top-level categories."""

from __future__ import annotations

import random
import re
import warnings
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from PIL import Image, ImageOps

from clipping_edge.errors import ClippingEdgeError

from .common import Prepared, Sample, keep_per_class, missing_source, write_generic

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


def clipart_image(path: Path, size: int) -> Callable[[], Image.Image | None]:
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
        raise missing_source("Openclipart PNGs (png/<category>/)", png_root, "openclipart-png openclipart-svg")
    if not svg_root.is_dir():
        raise missing_source("Openclipart SVGs with the titles and keywords (svg/<category>/)", svg_root, "openclipart-svg")
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
        samples.append(Sample(label, caption, clipart_image(png, image_size)))
    samples = keep_per_class(samples, limit_per_class)
    classes = sorted({s.label for s in samples})
    zero_shot = {"classes": classes, "templates": OPENCLIPART_TEMPLATES,
                 "synonyms": {c: OPENCLIPART_CLASSES[c] for c in classes if c in OPENCLIPART_CLASSES}}
    info = {"source": str(source), "image_size": image_size, "max_pixels": max_pixels,
            "limit_per_class": limit_per_class, "dropped_categories": list(OPENCLIPART_DROP), "skipped": skipped,
            "license": "public domain (Openclipart)"}
    return write_generic(out, "openclipart", samples, zero_shot, seed, info, progress=progress, force=force)


# -- Tux Paint stamps -------------------------------------------------------------------------------
