"""Zero-shot classification: text prototypes built once, then only the image tower runs per image."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Protocol, Sequence

import numpy as np

from .errors import ClippingEdgeError
from .fewshot import AUTO, FewShotHead, choose_method
from .index import PrototypeIndex
from .junk import below_ceiling, junk_ceilings
from .model import EdgeModel
from .pipeline import embed_images
from .preprocess import ImageInput, as_image_list
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
    """Classes for a bundle: each label's prompts embedded once into a prototype index, then `classify` runs
    only the image tower. Given neither `templates` nor `synonyms`, the bundle's own: those its export was
    validated with (CLIP's 7 ImageNet templates when it records none), a label among its synonym keys using
    their names. Or load a saved index with `from_index`.

    `shots` (class -> a few example images) adds few-shot classes, torch-free (fewshot.py): a class in
    `labels` gains image evidence, a class only in `shots` is known from its images (with its name as text
    too unless `shot_text=False`). `fewshot` picks the method (auto: the best by leave-one-out on the shots)."""

    def __init__(self, model: EdgeModel, labels: Sequence[str] | str | None = None, templates: Sequence[str] | None = None,
                 synonyms: Mapping[str, Sequence[str]] | None = None, index: PrototypeIndex | None = None,
                 index_dtype: str = "f16", shots: Mapping[str, Sequence[ImageInput]] | None = None,
                 fewshot: str = AUTO, shot_text: bool = True):
        self.model = model
        self.fewshot_method = fewshot
        if index is None:
            labels = check_labels(labels if labels is not None else []) if labels or not shots else []
            shot_embeddings = self._embed_shots(shots or {})
            extra = [name for name in shot_embeddings if name not in labels]
            classes = check_labels([*labels, *extra])
            has_text = [name in labels or shot_text for name in classes]
            warn_untrained(model, [name for name, text in zip(classes, has_text) if text])
            if templates is None and synonyms is None:  # the bundle's prompts, as its export validated them
                templates, synonyms = model.manifest.templates or DEFAULT_TEMPLATES, model.manifest.synonyms
            self.templates = check_templates(DEFAULT_TEMPLATES if templates is None else templates)
            self.synonyms = check_synonyms(synonyms)
            index = self._assemble(classes, has_text, self._text_rows(classes, has_text), shot_embeddings, index_dtype)
        elif index.fingerprint != model.manifest.fingerprint:
            raise ClippingEdgeError("the prototype index was built by another model: rebuild it with this bundle")
        else:
            self.templates = index.templates or model.manifest.templates or list(DEFAULT_TEMPLATES)
            self.synonyms = check_synonyms(model.manifest.synonyms)
        self.index = index
        self._ceilings: np.ndarray | None = None
        self._head: FewShotHead | None = None

    # -- building --------------------------------------------------------------------------------------

    def _text_rows(self, classes: Sequence[str], has_text: Sequence[bool]) -> np.ndarray:
        rows = np.zeros((len(classes), self.model.manifest.embed_dim), np.float32)
        named = [c for c, text in zip(classes, has_text) if text]
        if named:
            rows[np.asarray(has_text, bool)] = class_prototypes(self.model, named, self.templates, self.synonyms)
        return rows

    def _embed_shots(self, shots: Mapping[str, Sequence[ImageInput]]) -> dict[str, np.ndarray]:
        if not isinstance(shots, Mapping):
            raise ClippingEdgeError("shots must map each class name to a list of its images: {'mug': ['a.jpg', 'b.jpg']}")
        out = {}
        for name, images in shots.items():
            images = as_image_list(images)
            if not images:
                raise ClippingEdgeError(f"class {name!r} has no shots: give it at least one image, or leave it out")
            out[check_labels([name])[0]] = self.model.encode_image(images)
        return out

    def _assemble(self, classes: list[str], has_text: Sequence[bool], text_rows: np.ndarray,
                  shot_embeddings: Mapping[str, np.ndarray], dtype: str) -> PrototypeIndex:
        """The index: a text prototype per class (a shot-only class: its shots' normalised mean), the shots, and
        the few-shot head chosen by leave-one-out on the shots as the index stores them."""
        rows, shots, shot_labels = text_rows.copy(), [], []
        for c, name in enumerate(classes):
            if name in shot_embeddings:
                shots.append(shot_embeddings[name])
                shot_labels += [c] * len(shot_embeddings[name])
                if not has_text[c]:
                    mean = shot_embeddings[name].mean(0)
                    rows[c] = mean / max(float(np.linalg.norm(mean)), 1e-12)
        stacked = np.concatenate(shots) if shots else None
        index = PrototypeIndex.build(rows, classes, self.model.manifest.fingerprint, dtype, has_text, stacked, shot_labels)
        index.templates = list(self.templates)
        if shots:
            index.fewshot = choose_method(self.fewshot_method, index.few_shot_data(), self.model.logit_scale)
        return index

    def add_class(self, name: str, shots: Sequence[ImageInput] | ImageInput = (), text: bool = True) -> None:
        """A new class from its name (`text`), a few example images (`shots`), or both; the head is chosen again."""
        name = check_labels([name])[0]
        if name in self.labels:
            raise ClippingEdgeError(f"class {name!r} is already in the index: remove it first, or pick another name")
        images = as_image_list(shots)
        if not images and not text:
            raise ClippingEdgeError(f"class {name!r} needs shots, its name as text, or both")
        old = self.index
        embeddings = {label: old.shots[old.shot_labels == c] for c, label in enumerate(old.labels) if (old.shot_labels == c).any()}
        if images:
            embeddings[name] = self.model.encode_image(images)
        classes, has_text = [*old.labels, name], [*old.has_text.tolist(), text]
        rows = np.concatenate([old.matrix, self._text_rows([name], [text])])
        self._replace(self._assemble(classes, has_text, rows, embeddings, old.dtype))

    def remove_class(self, name: str) -> None:
        if name not in self.labels:
            raise ClippingEdgeError(f"class {name!r} is not in the index (it has {', '.join(self.labels[:8])}"
                                    f"{', ...' if len(self.labels) > 8 else ''})")
        if len(self.labels) == 1:
            raise ClippingEdgeError(f"{name!r} is the index's only class: an index keeps at least one")
        old, gone = self.index, self.labels.index(name)
        keep = [c for c in range(len(old.labels)) if c != gone]
        classes = [old.labels[c] for c in keep]
        embeddings = {old.labels[c]: old.shots[old.shot_labels == c] for c in keep if (old.shot_labels == c).any()}
        self._replace(self._assemble(classes, old.has_text[keep].tolist(), old.matrix[keep], embeddings, old.dtype))

    def _replace(self, index: PrototypeIndex) -> None:
        self.index, self._ceilings, self._head = index, None, None

    @classmethod
    def from_index(cls, model: EdgeModel, path: str | Path, view: bool = True) -> "ZeroShotClassifier":
        return cls(model, index=PrototypeIndex.load(path, fingerprint=model.manifest.fingerprint, view=view))

    @property
    def labels(self) -> list[str]:
        return self.index.labels

    def save_index(self, path: str | Path, force: bool = False) -> Path:
        return self.index.save(path, force)

    # -- scoring ---------------------------------------------------------------------------------------

    @property
    def head(self) -> FewShotHead | None:
        """The few-shot head when the index holds shots; None: plain zero-shot (logit scale x cosine)."""
        if self._head is None and len(self.index.shot_labels):
            self._head = self.index.head(self.model.logit_scale)
        return self._head

    def logits(self, embeddings: np.ndarray, cosines: np.ndarray | None = None) -> np.ndarray:
        if self.head is not None:
            return self.head.logits(embeddings)
        return self.model.logit_scale * (self.index.cosines(embeddings) if cosines is None else cosines)

    def probabilities(self, embeddings: np.ndarray) -> np.ndarray:
        """(B, d) image embeddings -> (B, C) class probabilities, columns in label order."""
        return softmax(self.logits(np.asarray(embeddings, np.float32)))

    def match_probabilities(self, embeddings: np.ndarray) -> np.ndarray:
        """A sigmoid model's (SigLIP) (B, C) per-label match probabilities, each independent of the other labels."""
        sigmoid = self.model.manifest.sigmoid
        if not sigmoid:
            raise ClippingEdgeError(f"{self.model.manifest.model_name} is a softmax model: its scores compare labels, "
                                    "use probabilities(); match probabilities need a sigmoid model (SigLIP)")
        logits = sigmoid["logit_scale"] * self.index.cosines(np.asarray(embeddings, np.float32)) + sigmoid["logit_bias"]
        return 1.0 / (1.0 + np.exp(-logits))

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
        logits = self.logits(embeddings, cosines)
        probs = softmax(logits)
        best = np.argpartition(-logits, k - 1, axis=1)[:, :k] if k < len(self.labels) else np.tile(np.arange(k), (len(logits), 1))
        best = np.take_along_axis(best, np.argsort(-np.take_along_axis(logits, best, 1), axis=1, kind="stable"), 1)
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
