"""Images that show nothing: what a camera sees with the lens covered, a sensor's noise, a blank wall.

They are the reference the "unknown" decision is measured against. A student's cosines drift with the
domain (synthetic shapes give higher cosines than real photos), but junk stays junk in every domain:
an image is called unknown when its best class is no closer to it than junk gets to that class.
Deterministic (a seed), numpy only, so every runtime and port can regenerate them.
"""

from __future__ import annotations

import numpy as np

JUNK_SIZE = 96  # the images are resized like any photo; their content has no detail to lose


def _blank(rng: np.random.Generator, n: int) -> list[np.ndarray]:
    colours = [(0, 0, 0), (255, 255, 255), (128, 128, 128), (200, 40, 40), (40, 160, 60), (40, 70, 200),
               (230, 210, 60), (90, 60, 40)]
    picks = [colours[i % len(colours)] for i in range(n)] if n <= len(colours) else \
        [tuple(int(v) for v in rng.integers(0, 256, 3)) for _ in range(n)]
    return [np.broadcast_to(np.asarray(c, np.uint8), (JUNK_SIZE, JUNK_SIZE, 3)).copy() for c in picks]


def _noise(rng: np.random.Generator, n: int) -> list[np.ndarray]:
    out = []
    for i in range(n):
        if i % 3 == 0:  # colour noise
            image = rng.integers(0, 256, (JUNK_SIZE, JUNK_SIZE, 3))
        elif i % 3 == 1:  # sensor noise around a grey level
            image = np.repeat(rng.normal(rng.uniform(40, 215), 30, (JUNK_SIZE, JUNK_SIZE, 1)), 3, axis=2)
        else:  # salt and pepper
            image = np.where(rng.random((JUNK_SIZE, JUNK_SIZE, 1)) < 0.5, 0, 255).repeat(3, axis=2)
        out.append(np.clip(image, 0, 255).astype(np.uint8))
    return out


def _gradient(rng: np.random.Generator, n: int) -> list[np.ndarray]:
    y, x = np.mgrid[0:JUNK_SIZE, 0:JUNK_SIZE] / (JUNK_SIZE - 1)
    out = []
    for i in range(n):
        ramp = [x, y, np.hypot(x - 0.5, y - 0.5) / 0.71][i % 3]
        a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        out.append((a + (b - a) * ramp[..., None]).astype(np.uint8))
    return out


def _pattern(rng: np.random.Generator, n: int) -> list[np.ndarray]:
    y, x = np.mgrid[0:JUNK_SIZE, 0:JUNK_SIZE]
    out = []
    for i in range(n):
        period = int(rng.integers(4, 24))
        if i % 3 == 0:  # checkerboard
            mask = ((x // period) + (y // period)) % 2
        elif i % 3 == 1:  # stripes
            mask = (x // period) % 2 if rng.random() < 0.5 else (y // period) % 2
        else:  # blurred noise ("clouds"): low-frequency noise upsampled
            coarse = rng.random((JUNK_SIZE // period + 2, JUNK_SIZE // period + 2))
            mask = coarse[y // period, x // period]
        a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        out.append((a + (b - a) * mask[..., None]).astype(np.uint8))
    return out


JUNK_FAMILIES = {"blank": _blank, "noise": _noise, "gradient": _gradient, "pattern": _pattern}


def junk_images(seed: int = 0, per_family: int = 8) -> dict[str, list[np.ndarray]]:
    """family -> `per_family` RGB uint8 images; the same for the same seed, everywhere."""
    rng = np.random.default_rng(seed)
    return {family: make(rng, per_family) for family, make in JUNK_FAMILIES.items()}


# The bundle's reference: 16 images a family, seed 0 (64 images, one float32 row each). Fresh junk of another
# seed is what the export measures the decision on, so the figures in the manifest are not of the reference.
REFERENCE_SEED, REFERENCE_PER_FAMILY, CHECK_SEED = 0, 16, 1
JUNK_FILE = "junk.f32"
UNKNOWN_RULE = ("unknown when the best class's cosine is no higher than the highest cosine any of the bundle's junk "
                "images (blank frames, noise, gradients, patterns) has with that class")


# Batching and the index's stored precision move a cosine by ~1e-6: a junk image is not "closer than junk" by that.
TIE = 1e-4


def junk_ceilings(junk_embeddings: np.ndarray, prototypes: np.ndarray) -> np.ndarray:
    """(C,) per class: the highest cosine a junk image reaches with it, the level a real match must clear."""
    return (np.asarray(junk_embeddings, np.float32) @ np.asarray(prototypes, np.float32).T).max(axis=0)


def below_ceiling(cosines: np.ndarray, ceilings: np.ndarray) -> np.ndarray:
    """(B,) whether each image's best class is no closer to it than junk gets to that class."""
    best = cosines.argmax(axis=1)
    return cosines[np.arange(len(cosines)), best] <= ceilings[best] + TIE


def measure_unknown(encode_images, prototypes: np.ndarray, in_domain: np.ndarray, junk_embeddings: np.ndarray) -> dict:
    """How the rule does for one label set: in-domain embeddings accepted, and fresh junk (another seed) rejected,
    per family. `encode_images` maps a list of RGB arrays to embeddings."""
    ceilings = junk_ceilings(junk_embeddings, prototypes)
    fresh = junk_images(CHECK_SEED, REFERENCE_PER_FAMILY)
    rejected = {family: float(below_ceiling(encode_images(images) @ prototypes.T, ceilings).mean())
                for family, images in fresh.items()}
    accepted = float((~below_ceiling(in_domain @ prototypes.T, ceilings)).mean()) if len(in_domain) else float("nan")
    return {"in_domain_accepted": accepted, "in_domain_images": int(len(in_domain)),
            "fresh_junk_rejected": rejected, "fresh_junk_seed": CHECK_SEED}
