"""emoji: Unicode's `emoji-test.txt` (fully-qualified lines), rendered with Noto Color Emoji; labels are the CLDR
subgroups (or groups)."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from clipping_edge.errors import ClippingEdgeError

from .common import (
    Prepared,
    Sample,
    keep_per_class,
    missing_source,
    with_article,
    write_generic,
)

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
        raise missing_source("emoji-test.txt", source, "unicode-data")
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
        caption = rng.choice(EMOJI_CAPTIONS).format(a=with_article(phrase), n=phrase, c=cls)
        samples.append(Sample(cls, caption, lambda text=e.text: render_emoji(text, font, image_size),
                              group=" ".join(f"{c:X}" for c in e.base)))
    samples = keep_per_class(samples, limit_per_class)
    zero_shot = {"classes": [c for c in classes if any(s.label == c for s in samples)], "templates": EMOJI_TEMPLATES,
                 "synonyms": {}}
    font_path = getattr(font, "path", None)  # a font loaded from bytes has a buffer here, not a path
    info = {"source": str(source), "font": str(font_path) if isinstance(font_path, (str, Path)) else type(font).__name__,
            "image_size": image_size,
            "label": label, "skin_tones": skin_tones, "limit_per_class": limit_per_class,
            "skipped": {"skin-tone variants": dropped}}
    return write_generic(out, "emoji", samples, zero_shot, seed, info, progress=progress, force=force)


# -- Openclipart ------------------------------------------------------------------------------------
