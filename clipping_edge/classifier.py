"""Zero-shot classification: text prototypes built once, then only the image tower runs per image."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Protocol, Sequence

import numpy as np

from .errors import ClippingEdgeError
from .index import PrototypeIndex
from .junk import below_ceiling, junk_ceilings
from .model import EdgeModel
from .pipeline import embed_images
from .preprocess import ImageInput
from .prompts import DEFAULT_TEMPLATES, check_synonyms, check_templates, fill


NO_MATCH = "unknown"


@dataclass(frozen=True)
class Prediction:
    label: str  # a class, or NO_MATCH (the image is called unknown: see classify_embeddings)
    score: float  # softmax(logit_scale * cos) over all classes; 0 for NO_MATCH, which is no class
    cosine: float  # this class's cosine; for NO_MATCH the best class's


def check_labels(labels: Sequence[str] | str) -> list[str]:
    """Class names, each once; a lone string is one class, never its characters."""
    if isinstance(labels, str):
        labels = [labels]
    if any(not isinstance(label, str) for label in labels):
        bad = next(label for label in labels if not isinstance(label, str))
        raise ClippingEdgeError(f"label {bad!r} is not text: pass class names as strings")
    labels = [label.strip() for label in labels]
    if not labels:
        raise ClippingEdgeError("the label list is empty: pass at least one class name")
    if any(not label for label in labels):
        raise ClippingEdgeError("the label list has an empty name: remove blank lines from the labels")
    seen: set[str] = set()
    dupes = sorted({label for label in labels if label in seen or seen.add(label)})
    if dupes:
        raise ClippingEdgeError(f"the label list repeats {', '.join(map(repr, dupes[:5]))}: give each class once "
                                "(put alternative names in synonyms)")
    return labels


class TextEncoder(Protocol):
    """Anything that embeds texts to L2-normalised rows: a bundle, or the PyTorch student in evaluation."""

    def encode_text(self, texts: Sequence[str]) -> np.ndarray: ...


def untrained_pieces(model: EdgeModel, labels: Sequence[str]) -> dict[str, list[str]]:
    """Labels the vocabulary spells with word pieces the student's text tower never trained on -> those pieces."""
    trained = model.manifest.trained_token_ids
    if trained is None:
        return {}
    known = set(trained)
    tokenizer = model.tokenizer.tokenizer
    found = {}
    for label in labels:
        encoding = tokenizer.encode(label[:256], add_special_tokens=False)
        pieces = [t for t, i in zip(encoding.tokens, encoding.ids) if i not in known and t != "<pad>"]
        if pieces:
            found[label] = pieces
    return found


def warn_untrained(model: EdgeModel, labels: Sequence[str]) -> None:
    found = untrained_pieces(model, labels)
    if found:
        named = ", ".join(f"{label!r} ({' '.join(p)})" for label, p in list(found.items())[:8])
        more = f" and {len(found) - 8} more" if len(found) > 8 else ""
        warnings.warn(f"{len(found)} label(s) use word pieces the student never trained on, so their scores are "
                      f"unreliable: {named}{more}", stacklevel=3)


def class_prototypes(model: TextEncoder, labels: Sequence[str], templates: Sequence[str] = DEFAULT_TEMPLATES,
                     synonyms: Mapping[str, Sequence[str]] | None = None) -> np.ndarray:
    """Every template x synonym embedded, normalised, averaged, normalised again: (C, d)."""
    templates, synonyms = check_templates(templates), check_synonyms(synonyms)
    texts: list[str] = []
    owner: list[int] = []
    for c, label in enumerate(labels):
        for name in synonyms.get(label) or [label]:
            for template in templates:
                texts.append(fill(template, name))
                owner.append(c)
    emb = model.encode_text(texts)
    sums = np.zeros((len(labels), emb.shape[1]), np.float64)
    np.add.at(sums, np.asarray(owner), emb)
    return (sums / np.linalg.norm(sums, axis=1, keepdims=True)).astype(np.float32)


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine; two all-zero rows (a CNN whose ReLUs all die on a tiny flat image) are the same
    output, cosine 1, and one zero row against a non-zero one is cosine 0. NaN stays NaN."""
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = (a * b).sum(1) / (na * nb)
    cos[(na == 0) & (nb == 0)] = 1.0
    cos[(na == 0) ^ (nb == 0)] = 0.0
    return cos


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


class ZeroShotClassifier:
    """Zero-shot classes for a bundle: each label's prompts embedded once into a prototype index, then
    `classify` runs only the image tower. Given neither `templates` nor `synonyms`, the bundle's own: those
    its export was validated with (CLIP's 7 ImageNet templates when it records none), a label among its
    synonym keys using their names. Or load a saved index with `from_index`."""

    def __init__(self, model: EdgeModel, labels: Sequence[str] | None = None, templates: Sequence[str] | None = None,
                 synonyms: Mapping[str, Sequence[str]] | None = None, index: PrototypeIndex | None = None,
                 index_dtype: str = "f16"):
        self.model = model
        if index is None:
            labels = check_labels(labels if labels is not None else [])
            warn_untrained(model, labels)
            if templates is None and synonyms is None:  # the bundle's prompts, as its export validated them
                templates, synonyms = model.manifest.templates or DEFAULT_TEMPLATES, model.manifest.synonyms
            templates = check_templates(DEFAULT_TEMPLATES if templates is None else templates)
            synonyms = check_synonyms(synonyms)
            index = PrototypeIndex.build(class_prototypes(model, labels, templates, synonyms), labels,
                                         model.manifest.fingerprint, index_dtype)
        elif index.fingerprint != model.manifest.fingerprint:
            raise ClippingEdgeError("the prototype index was built by another model: rebuild it with this bundle")
        self.index = index
        self._ceilings: np.ndarray | None = None

    @classmethod
    def from_index(cls, model: EdgeModel, path: str | Path, view: bool = True) -> "ZeroShotClassifier":
        return cls(model, index=PrototypeIndex.load(path, fingerprint=model.manifest.fingerprint, view=view))

    @property
    def labels(self) -> list[str]:
        return self.index.labels

    def save_index(self, path: str | Path, force: bool = False) -> Path:
        return self.index.save(path, force)

    def probabilities(self, embeddings: np.ndarray) -> np.ndarray:
        """(B, d) image embeddings -> (B, C) class probabilities, columns in label order."""
        return softmax(self.model.logit_scale * self.index.cosines(embeddings))

    def junk_ceilings(self) -> np.ndarray:
        """(C,) per class the highest cosine the bundle's junk images reach with it (see junk.py)."""
        if self._ceilings is None:
            self._ceilings = junk_ceilings(self.model.junk_embeddings(), self.index.matrix)
        return self._ceilings

    def classify_embeddings(self, embeddings: np.ndarray, top_k: int = 5,
                            min_cosine: float | str | None = None) -> list[list[Prediction]]:
        """Top-k per image, best first. With `min_cosine` an image may be answered NO_MATCH, put first with score 0
        (it is a verdict, not a class: the class rows after it keep their probabilities): "auto" when its best
        class is no closer to it than the bundle's junk images get to that class, a number when its best cosine
        is below it."""
        predictions = self._top_k(embeddings, top_k)
        if min_cosine is None:
            return predictions
        if isinstance(min_cosine, str):
            if min_cosine != "auto":
                raise ClippingEdgeError(f"min_cosine {min_cosine!r} is neither 'auto' nor a cosine")
            rejected = below_ceiling(self.index.cosines(np.asarray(embeddings, np.float32)), self.junk_ceilings())
        else:
            rejected = np.array([preds[0].cosine < min_cosine for preds in predictions], bool)
        return [[Prediction(NO_MATCH, 0.0, preds[0].cosine)] + preds if reject else preds
                for preds, reject in zip(predictions, rejected)]

    def _top_k(self, embeddings: np.ndarray, top_k: int) -> list[list[Prediction]]:
        embeddings = np.asarray(embeddings, dtype=np.float32)
        if embeddings.ndim != 2 or embeddings.shape[1] != self.model.manifest.embed_dim:
            raise ClippingEdgeError(f"embeddings must have shape (B, {self.model.manifest.embed_dim}), got {embeddings.shape}")
        if top_k < 1:
            raise ClippingEdgeError(f"top_k must be at least 1, got {top_k}")
        k = min(top_k, len(self.labels))
        cosines = self.index.cosines(embeddings)
        probs = softmax(self.model.logit_scale * cosines)
        best = np.argpartition(-cosines, k - 1, axis=1)[:, :k] if k < len(self.labels) else np.tile(np.arange(k), (len(cosines), 1))
        best = np.take_along_axis(best, np.argsort(-np.take_along_axis(cosines, best, 1), axis=1), 1)
        return [[Prediction(self.labels[p], float(pr[p]), float(co[p])) for p in row]
                for row, pr, co in zip(best, probs, cosines)]

    def classify(self, images: Sequence[ImageInput] | ImageInput, top_k: int = 5, batch_size: int = 32,
                 min_cosine: float | str | None = None) -> list[list[Prediction]]:
        """One image or a list (paths, bytes, Pillow images, RGB uint8 HxWx3 frames: convert OpenCV's BGR
        first) -> per image the top-k predictions, best first."""
        return self.classify_embeddings(self.model.encode_image(images, batch_size), top_k, min_cosine)

    def classify_stream(self, images: Iterable[ImageInput], top_k: int = 5, batch_size: int = 32,
                        skip_unreadable: bool = False, min_cosine: float | str | None = None
                        ) -> Iterator[tuple[ImageInput, list[Prediction]]]:
        """(image, predictions) as each batch is done, decoding the next batches meanwhile: for
        folders, cameras and video (an iterable of uint8 HxWx3 frames)."""
        for sources, embeddings in embed_images(self.model, images, batch_size, skip_unreadable):
            yield from zip(sources, self.classify_embeddings(embeddings, top_k, min_cosine))
