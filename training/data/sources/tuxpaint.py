"""tuxpaint: Tux Paint's stamps, `<category>/.../<stamp>.png` beside `<stamp>.txt`, whose first line is the
stamp's English description; labels are the top-level categories."""

from __future__ import annotations

import re
from pathlib import Path

from .common import Prepared, Sample, keep_per_class, missing_source, write_generic
from .openclipart import clipart_image

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
        raise missing_source("Tux Paint stamps (<category>/.../<stamp>.txt + .png)", source, "tuxpaint-stamps-default")
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
        samples.append(Sample(rel.parts[0], caption, clipart_image(png, image_size), group=caption.lower()))
    skipped["mirror copies"] = sum(1 for p in source.rglob("*_mirror.png"))
    samples = keep_per_class(samples, limit_per_class)
    classes = sorted({s.label for s in samples})
    zero_shot = {"classes": classes, "templates": TUXPAINT_TEMPLATES,
                 "synonyms": {c: TUXPAINT_CLASSES[c] for c in classes if c in TUXPAINT_CLASSES}}
    info = {"source": str(source), "image_size": image_size, "limit_per_class": limit_per_class, "skipped": skipped,
            "license": "GPL-2 (Tux Paint stamps, Debian package copyright)"}
    return write_generic(out, "tuxpaint", samples, zero_shot, seed, info, progress=progress, force=force)
