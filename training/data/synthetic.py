"""The built-in dataset: rendered compositional scenes with exact captions.

Each scene has 1-3 objects; an object is a shape x colour x size x texture; scenes have a background
and the captions name positions and spatial relations, through several templates and synonyms.
Some (colour, shape) pairs never appear in training images: the test split contains them, so
zero-shot accuracy on those classes measures composition, not memorisation.

Every sample is a pure function of (seed, split, index), so the set is reproducible and can be
generated in any order or in parallel.
"""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

SHAPES: dict[str, list[str]] = {
    "circle": ["circle", "disc", "round shape"],
    "square": ["square", "box"],
    "triangle": ["triangle"],
    "star": ["star"],
    "hexagon": ["hexagon"],
    "cross": ["cross", "plus sign"],
}
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 38, 38),
    "green": (34, 160, 60),
    "blue": (38, 80, 215),
    "yellow": (240, 205, 30),
    "purple": (135, 55, 185),
    "orange": (245, 130, 25),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
}
COLOUR_SYNONYMS: dict[str, list[str]] = {"red": ["red", "crimson"], "purple": ["purple", "violet"],
                                         "black": ["black", "dark"]}
SIZES: dict[str, float] = {"small": 0.13, "large": 0.24}  # radius as a fraction of the canvas
TEXTURES = ["plain", "striped", "dotted", "checkered"]
BACKGROUNDS: dict[str, tuple[int, int, int]] = {"grey": (128, 128, 128), "beige": (226, 212, 182),
                                                "navy": (28, 32, 70), "teal": (40, 120, 120)}
POSITIONS: dict[str, tuple[float, float]] = {"on the left": (0.27, 0.5), "on the right": (0.73, 0.5),
                                             "at the top": (0.5, 0.27), "at the bottom": (0.5, 0.73),
                                             "in the middle": (0.5, 0.5)}
TEMPLATES = ["a photo of {}.", "{}.", "an image showing {}.", "there is {}.", "a picture of {}.", "a drawing of {}."]
ZERO_SHOT_TEMPLATES = ["a photo of a {}.", "a picture of a {}.", "an image showing a {}.", "a drawing of a {}.", "a {}."]

# One held-out shape per colour, so every colour and every shape is still seen in training.
HELD_OUT: list[tuple[str, str]] = [(c, list(SHAPES)[(i * 5 + 2) % len(SHAPES)]) for i, c in enumerate(COLOURS)]


@dataclass(frozen=True)
class SceneObject:
    shape: str
    colour: str
    size: str
    texture: str
    x: float
    y: float

    @property
    def label(self) -> str:
        return f"{self.colour} {self.shape}"


def class_names() -> list[str]:
    return [f"{c} {s}" for c in COLOURS for s in SHAPES]


def _polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    import math

    def ring(n: int, radius: float, phase: float) -> list[tuple[float, float]]:
        return [(cx + radius * math.cos(phase + 2 * math.pi * k / n), cy + radius * math.sin(phase + 2 * math.pi * k / n))
                for k in range(n)]

    if shape == "square":
        return ring(4, r * 1.15, math.pi / 4)
    if shape == "triangle":
        return ring(3, r * 1.2, -math.pi / 2)
    if shape == "hexagon":
        return ring(6, r, 0.0)
    if shape == "star":
        outer, inner = ring(5, r * 1.25, -math.pi / 2), ring(5, r * 0.5, -math.pi / 2 + math.pi / 5)
        return [p for pair in zip(outer, inner) for p in pair]
    if shape == "cross":
        a, b = r * 1.05, r * 0.38
        return [(cx - b, cy - a), (cx + b, cy - a), (cx + b, cy - b), (cx + a, cy - b), (cx + a, cy + b), (cx + b, cy + b),
                (cx + b, cy + a), (cx - b, cy + a), (cx - b, cy + b), (cx - a, cy + b), (cx - a, cy - b), (cx - b, cy - b)]
    raise ValueError(shape)


def _fill(size: int, colour: tuple[int, int, int], texture: str, period: int) -> Image.Image:
    """A full-canvas fill of the object's colour with its texture drawn in a contrasting tone."""
    fill = Image.new("RGB", (size, size), colour)
    if texture == "plain":
        return fill
    tone = tuple(int(v * 0.45) for v in colour) if sum(colour) > 300 else tuple(min(255, v + 120) for v in colour)
    draw = ImageDraw.Draw(fill)
    if texture == "striped":
        for x in range(-size, size, period):
            draw.polygon([(x, 0), (x + period // 2, 0), (x + period // 2 + size, size), (x + size, size)], fill=tone)
    elif texture == "dotted":
        for y in range(period // 2, size, period):
            for x in range(period // 2, size, period):
                draw.ellipse([x - period / 4, y - period / 4, x + period / 4, y + period / 4], fill=tone)
    elif texture == "checkered":
        for y in range(0, size, period):
            for x in range(0, size, period):
                if (x // period + y // period) % 2:
                    draw.rectangle([x, y, x + period - 1, y + period - 1], fill=tone)
    return fill


def render(objects: list[SceneObject], background: str, size: int, rng: random.Random) -> Image.Image:
    scale = 2  # draw at 2x and downsample: anti-aliased edges
    canvas = size * scale
    base = BACKGROUNDS[background]
    image = Image.new("RGB", (canvas, canvas), tuple(max(0, min(255, v + rng.randint(-12, 12))) for v in base))
    for obj in objects:
        r = SIZES[obj.size] * canvas * rng.uniform(0.9, 1.1)
        cx, cy = obj.x * canvas, obj.y * canvas
        mask = Image.new("L", (canvas, canvas), 0)
        mdraw = ImageDraw.Draw(mask)
        if obj.shape == "circle":
            mdraw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
        else:
            mdraw.polygon(_polygon(obj.shape, cx, cy, r), fill=255)
        image.paste(_fill(canvas, COLOURS[obj.colour], obj.texture, max(4, int(r / 2))), (0, 0), mask)
    return image.resize((size, size), Image.Resampling.LANCZOS)


def _describe(obj: SceneObject, rng: random.Random, detail: float) -> str:
    colour = rng.choice(COLOUR_SYNONYMS.get(obj.colour, [obj.colour]))
    words = []
    if rng.random() < detail:
        words.append(obj.size)
    if obj.texture != "plain" and rng.random() < detail:
        words.append(obj.texture)
    words += [colour, rng.choice(SHAPES[obj.shape])]
    phrase = " ".join(words)
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _relation(a: SceneObject, b: SceneObject) -> str:
    dx, dy = b.x - a.x, b.y - a.y
    if abs(dx) >= abs(dy):
        return "to the left of" if dx > 0 else "to the right of"
    return "above" if dy > 0 else "below"


def _allowed(colour: str, shape: str, split: str) -> bool:
    return split != "train" or (colour, shape) not in HELD_OUT


def sample_scene(seed: int, split: str, index: int, size: int) -> tuple[Image.Image, str, str]:
    """One (image, caption, label) triple. Test scenes hold one object whose label is its class."""
    rng = random.Random(f"{seed}/{split}/{index}")
    n_objects = 1 if split != "train" else rng.choice([1, 1, 2, 2, 3])
    cells = rng.sample(list(POSITIONS.items()), n_objects) if n_objects == 1 else \
        rng.sample([(None, (x, y)) for x in (0.27, 0.73) for y in (0.27, 0.73)], n_objects)
    if split != "train":  # test classes uniformly over all colour x shape pairs, held-out ones included
        colour, shape = divmod(index % len(class_names()), len(SHAPES))
        forced = (list(COLOURS)[colour], list(SHAPES)[shape])
    objects = []
    for k, (_, (x, y)) in enumerate(cells):
        while True:
            colour, shape = forced if split != "train" and k == 0 else (rng.choice(list(COLOURS)), rng.choice(list(SHAPES)))
            if _allowed(colour, shape, split):
                break
        size_name = "small" if n_objects == 3 else rng.choice(list(SIZES))
        objects.append(SceneObject(shape, colour, size_name, rng.choice(TEXTURES),
                                   x + rng.uniform(-0.04, 0.04), y + rng.uniform(-0.04, 0.04)))
    background = rng.choice(list(BACKGROUNDS))
    image = render(objects, background, size, rng)

    detail = rng.uniform(0.2, 0.9)  # how much of the scene a caption bothers to mention, as on the web
    first = _describe(objects[0], rng, detail)
    if n_objects == 1:
        body = first + (" " + cells[0][0] if rng.random() < detail else "")
    elif n_objects == 2:
        body = f"{first} {_relation(objects[0], objects[1])} {_describe(objects[1], rng, detail)}"
    else:
        body = f"{first}, {_describe(objects[1], rng, detail)} and {_describe(objects[2], rng, detail)}"
    if rng.random() < detail * 0.5:
        body += f" on a {background} background"
    return image, rng.choice(TEMPLATES).format(body), objects[0].label


def zero_shot_spec() -> dict:
    """The zero-shot task written next to the data: classes, synonyms, templates, held-out classes."""
    synonyms = {f"{c} {s}": [f"{cs} {ss}" for cs in COLOUR_SYNONYMS.get(c, [c]) for ss in SHAPES[s]]
                for c in COLOURS for s in SHAPES}
    return {"classes": class_names(), "synonyms": synonyms, "templates": ZERO_SHOT_TEMPLATES,
            "held_out": [f"{c} {s}" for c, s in HELD_OUT]}


def generate(out: str | Path, n_train: int = 8000, n_test: int = 960, seed: int = 0, image_size: int = 64,
             progress: bool = True, force: bool = False) -> Path:
    """Write `out/{train,test}/` in the generic format (images/ + captions.csv) and `out/zeroshot.json`."""
    from clipping_edge.atomic import atomic_directory, write_json_atomic

    from ..progress import progress_bar

    out = Path(out)
    with atomic_directory(out, "dataset", force=force) as tmp:
        for split, n in (("train", n_train), ("test", n_test)):
            (tmp / split / "images").mkdir(parents=True)
            with open(tmp / split / "captions.csv", "w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(["image", "caption", "label"])
                for i in progress_bar(range(n), desc=f"rendering {split}", disable=not progress):
                    image, caption, label = sample_scene(seed, split, i, image_size)
                    name = f"images/{i:06d}.png"
                    image.save(tmp / split / name, optimize=False, compress_level=1)
                    writer.writerow([name, caption, label])
            write_json_atomic(tmp / split / "zeroshot.json", zero_shot_spec())
        write_json_atomic(tmp / "dataset.json", {"name": "synthetic", "version": 1, "seed": seed,
                                                  "image_size": image_size, "n_train": n_train, "n_test": n_test})
    return out
