"""Few-shot classes, training-free: a handful of labelled photos per class added to the text prototypes, in numpy.

Every method gives class logits of one form, so the runtime, the app-ready classifier and the JavaScript client
score alike:

    logits(x) = x · Wᵀ + b  +  w · exp(−β (1 − x · Sᵀ)) · L

- `mix`: prototype mixing. W = scale · normalise(α · text_c + (1 − α) · image_c), image_c the normalised mean of
  the class's shots; no bias, no cache.
- `tip`: Tip-Adapter's cache model (Zhang et al. 2022). W = scale · text prototypes; the cache keys S are the
  shots' embeddings, L their one-hot labels, β the sharpness and w the cache's weight.
- `lda`: a closed-form linear head on the shots (shrinkage LDA: class means, one covariance pooled over the
  classes and shrunk towards the identity) added to the zero-shot logits with weight γ. Linear, so W and b hold it.

A class with shots but no text uses its image prototype where the text one would be; a class without shots keeps
its text prototype (and no LDA row of its own). The method's settings (α; β and w; γ and the shrinkage) are chosen
by leave-one-out on the shots themselves, from a grid that starts at plain zero-shot, and ties keep the setting
nearest zero-shot: on the shots, adding them never does worse than zero-shot.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import ClippingEdgeError

METHODS = ("mix", "tip", "lda")
AUTO = "auto"
# Grids, zero-shot first. w and γ are in units of the logit scale, so one grid fits every student.
MIX_ALPHAS = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0)
TIP_BETAS = (1.0, 3.0, 5.5, 10.0, 20.0)
TIP_WEIGHTS = (0.0, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0)
LDA_GAMMAS = (0.0, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0)
LDA_SHRINKAGE = (0.05, 0.2, 0.5, 0.8)
# Leave-one-out holds out at most this many shots, spread over the classes (an LDA is refitted for each).
LOO_SHOTS = 160


def _normalise(rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=-1, keepdims=True)
    return rows / np.where(norms == 0, 1, norms)


@dataclass
class FewShotHead:
    """Class logits for normalised image embeddings: x · Wᵀ + b + cache_weight · exp(−β (1 − x · Sᵀ)) · onehot(L)."""
    weights: np.ndarray  # (C, d)
    bias: np.ndarray  # (C,)
    shots: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))  # (N, d) cache keys; empty: none
    shot_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # (N,) class of each key
    beta: float = 0.0
    cache_weight: float = 0.0

    def logits(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float32)
        out = np.stack([self.weights @ q for q in x]) + self.bias if len(x) else np.zeros((0, len(self.bias)), np.float32)
        if self.cache_weight and len(self.shots):
            affinity = np.exp(-self.beta * (1.0 - x @ self.shots.T))
            out = out + self.cache_weight * _class_sums(affinity, self.shot_labels, len(self.bias))
        return out.astype(np.float32)


def _class_sums(values: np.ndarray, labels: np.ndarray, classes: int) -> np.ndarray:
    """(B, N) per-shot values -> (B, C) summed per class (the one-hot product, without the one-hot matrix)."""
    out = np.zeros((values.shape[0], classes), np.float64)
    np.add.at(out.T, labels, values.T)
    return out


@dataclass
class Shots:
    """What the methods read: text prototypes (a shot-only class's row is its image prototype), which classes have
    text, and the shots' embeddings and classes."""
    text: np.ndarray  # (C, d) normalised
    has_text: np.ndarray  # (C,) bool
    embeddings: np.ndarray  # (N, d) normalised
    labels: np.ndarray  # (N,) class index

    @property
    def classes(self) -> int:
        return len(self.text)

    def image_prototypes(self, without: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(C, d) normalised mean of each class's shots (leaving shot `without` out) and (C,) whether it has any."""
        keep = np.ones(len(self.labels), bool)
        if without is not None:
            keep[without] = False
        sums = np.zeros_like(self.text, dtype=np.float64)
        np.add.at(sums, self.labels[keep], self.embeddings[keep])
        counts = np.bincount(self.labels[keep], minlength=self.classes)
        return _normalise(sums).astype(np.float32), counts > 0


def fit_mix(shots: Shots, scale: float, alpha: float, without: int | None = None) -> FewShotHead:
    image, has_image = shots.image_prototypes(without)
    text = np.where(shots.has_text[:, None], shots.text, image)
    mixed = np.where((shots.has_text & has_image)[:, None], alpha * text + (1 - alpha) * image, text)
    # a shot-only class whose one shot is left out has nothing left: it cannot be predicted
    rows = _normalise(mixed) * np.where(shots.has_text | has_image, 1.0, 0.0)[:, None]
    bias = np.where(shots.has_text | has_image, 0.0, -np.inf)
    return FewShotHead((scale * rows).astype(np.float32), bias.astype(np.float32))


def fit_tip(shots: Shots, scale: float, beta: float, weight: float) -> FewShotHead:
    head = fit_mix(shots, scale, 1.0)
    return FewShotHead(head.weights, head.bias, shots.embeddings, shots.labels, beta, weight * scale)


@dataclass
class _LdaFit:
    """Shrinkage LDA on the shots: class means, the pooled within-class scatter, and the covariance it gives."""
    means: np.ndarray  # (C, d)
    present: np.ndarray  # (C,) classes with shots
    counts: np.ndarray  # (C,)
    covariance: np.ndarray  # (d, d) shrunk
    unit: float  # the largest |logit| on the class means: LDA logits are rescaled by it

    @classmethod
    def on(cls, shots: Shots, shrinkage: float) -> "_LdaFit":
        x, y = shots.embeddings.astype(np.float64), shots.labels
        counts = np.bincount(y, minlength=shots.classes)
        present = counts > 0
        means = np.zeros((shots.classes, x.shape[1]))
        np.add.at(means, y, x)
        means[present] /= counts[present, None]
        centred = x - means[y]
        scatter = centred.T @ centred / max(len(x) - int(present.sum()), 1)
        level = max(np.trace(scatter) / x.shape[1], 1e-6)
        covariance = (1 - shrinkage) * scatter + shrinkage * level * np.eye(x.shape[1])
        w = np.linalg.solve(covariance, means[present].T).T
        unit = max(float(np.abs(w @ means[present].T).max()), 1e-6) if present.any() else 1.0
        return cls(means, present, counts, covariance, unit)

    def head(self) -> tuple[np.ndarray, np.ndarray]:
        """(C, d) weights and (C,) bias in units of `unit`; zero for classes without shots (they keep zero-shot's)."""
        w = np.linalg.solve(self.covariance, self.means.T).T
        b = -0.5 * (w * self.means).sum(1)
        w[~self.present], b[~self.present] = 0.0, 0.0
        return w / self.unit, b / self.unit

    def held_out_logits(self, shots: Shots, shrinkage: float, held_out: np.ndarray) -> np.ndarray:
        """(H, C) each held-out shot's LDA logits from the fit without it. Removing one shot changes its class mean
        and takes a rank-one term out of the scatter, so the covariance's inverse follows by Sherman-Morrison
        instead of a new solve; the shrinkage level and the rescaling unit stay those of the full fit."""
        inverse = np.linalg.inv(self.covariance)
        dof_full = max(len(shots.labels) - int(self.present.sum()), 1)
        out = np.zeros((len(held_out), shots.classes))
        for row, i in enumerate(held_out):
            c, x = int(shots.labels[i]), shots.embeddings[i].astype(np.float64)
            n = self.counts[c]
            means = self.means.copy()
            present = self.present.copy()
            if n > 1:
                means[c] = (n * means[c] - x) / (n - 1)
                v = x - self.means[c]
                # scatter loses n/(n-1) v v^T; the covariance (1-shrinkage) of that, over dof
                u = np.sqrt((1 - shrinkage) * n / (n - 1) / dof_full) * v
                iu = inverse @ u
                inv = inverse + np.outer(iu, iu) / (1.0 - u @ iu)
            else:
                present[c], inv = False, inverse
            w = means[present] @ inv
            logits = np.zeros(shots.classes)
            logits[present] = (w @ x - 0.5 * (w * means[present]).sum(1)) / self.unit
            out[row] = logits
        return out


def fit_lda(shots: Shots, scale: float, gamma: float, shrinkage: float) -> FewShotHead:
    head = fit_mix(shots, scale, 1.0)
    if gamma == 0:
        return head
    w, b = _LdaFit.on(shots, shrinkage).head()
    return FewShotHead((head.weights + gamma * scale * w).astype(np.float32), (head.bias + gamma * scale * b).astype(np.float32))


def _spread(labels: np.ndarray, limit: int) -> np.ndarray:
    """At most `limit` shot positions, taking each class's first shot, then each class's second, and so on."""
    rank = np.zeros(len(labels), np.int64)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        rank[members] = np.arange(len(members))
    return np.sort(np.lexsort((labels, rank))[:limit])


def loo_mix_logits(shots: Shots, scale: float, alpha: float, held_out: np.ndarray) -> np.ndarray:
    """(H, C) each held-out shot's logits from the mix head built without it: only its own class's image
    prototype changes, so that one column is recomputed."""
    x, c = shots.embeddings[held_out], shots.labels[held_out]
    head = fit_mix(shots, scale, alpha)
    logits = np.stack([head.weights @ q for q in x]).astype(np.float64)
    sums = np.zeros_like(shots.text, dtype=np.float64)
    np.add.at(sums, shots.labels, shots.embeddings)
    counts = np.bincount(shots.labels, minlength=shots.classes)
    rest = sums[c] - x
    left = counts[c] > 1
    image = _normalise(rest)
    text = shots.has_text[c]
    own = np.where(text[:, None], alpha * shots.text[c] + (1 - alpha) * image, image)
    own = np.where((text & ~left)[:, None], shots.text[c], own)  # nothing left of its shots: its text alone
    own_logit = scale * (x * _normalise(own)).sum(1)
    own_logit[~text & ~left] = -np.inf  # a shot-only class whose one shot is held out cannot be predicted
    logits[np.arange(len(c)), c] = own_logit
    return logits


_FIRST = {"mix": {"alpha": MIX_ALPHAS[0]}, "tip": {"beta": TIP_BETAS[0], "weight": TIP_WEIGHTS[0]},
          "lda": {"gamma": LDA_GAMMAS[0], "shrinkage": LDA_SHRINKAGE[0]}}


def choose(method: str, shots: Shots, scale: float) -> tuple[dict, float, float]:
    """The method's settings with the best leave-one-out accuracy on the shots (first in grid order on ties).
    Returns (settings, their leave-one-out accuracy, zero-shot's on the same shots)."""
    # Only a shot whose class keeps another shot when it is left out tells whether image evidence helps; a class with
    # one shot cannot be validated, so where no class has two the grid's first setting (zero-shot) stands.
    if method not in METHODS:
        raise ClippingEdgeError(f"unknown few-shot method {method!r}: choose one of {', '.join((AUTO, *METHODS))}")
    counts = np.bincount(shots.labels, minlength=shots.classes)
    testable = np.flatnonzero(counts[shots.labels] > 1)
    if len(testable) == 0:
        return _FIRST[method], 0.0, 0.0
    held_out = testable[_spread(shots.labels[testable], LOO_SHOTS)]
    truth = shots.labels[held_out]
    base = loo_mix_logits(shots, scale, 1.0, held_out)  # zero-shot, each held-out shot's class rebuilt without it

    def accuracy(logits: np.ndarray) -> float:
        return float((logits.argmax(1) == truth).mean())

    if method == "mix":
        candidates = [{"alpha": a} for a in MIX_ALPHAS]
        scores = [accuracy(loo_mix_logits(shots, scale, c["alpha"], held_out)) for c in candidates]
    elif method == "tip":
        candidates = [{"beta": b, "weight": w} for w in TIP_WEIGHTS for b in (TIP_BETAS if w else TIP_BETAS[:1])]
        affinity = shots.embeddings[held_out] @ shots.embeddings.T
        affinity[np.arange(len(held_out)), held_out] = -np.inf  # no shot sees itself in the cache
        scores = [accuracy(base + c["weight"] * scale * _class_sums(np.exp(-c["beta"] * (1.0 - affinity)), shots.labels,
                                                                    shots.classes)) for c in candidates]
    elif method == "lda":
        candidates, scores = [_FIRST["lda"]], [accuracy(base)]
        for shrinkage in LDA_SHRINKAGE:
            terms = scale * _LdaFit.on(shots, shrinkage).held_out_logits(shots, shrinkage, held_out)
            for gamma in LDA_GAMMAS[1:]:
                candidates.append({"gamma": gamma, "shrinkage": shrinkage})
                scores.append(accuracy(base + gamma * terms))
    else:
        raise ClippingEdgeError(f"unknown few-shot method {method!r}: choose one of {', '.join((AUTO, *METHODS))}")
    best = int(np.argmax(scores))  # the first best: nearest zero-shot
    return candidates[best], scores[best], accuracy(base)


def fit(method: str, shots: Shots, scale: float, settings: dict) -> FewShotHead:
    if method == "mix":
        return fit_mix(shots, scale, settings["alpha"])
    if method == "tip":
        return fit_tip(shots, scale, settings["beta"], settings["weight"])
    if method == "lda":
        return fit_lda(shots, scale, settings["gamma"], settings["shrinkage"])
    raise ClippingEdgeError(f"unknown few-shot method {method!r}: choose one of {', '.join(METHODS)}")


def choose_method(method: str, shots: Shots, scale: float) -> dict:
    """`auto`: every method, the best leave-one-out accuracy (ties: the simplest, in METHODS order). The record
    goes into the index: the method, its settings and each method's leave-one-out figures."""
    tried = {}
    for name in (METHODS if method == AUTO else (method,)):
        settings, accuracy, zero_shot = choose(name, shots, scale)
        tried[name] = {"settings": settings, "loo_accuracy": accuracy}
    best = max(tried, key=lambda name: tried[name]["loo_accuracy"])  # max keeps the first of equals
    return {"method": best, "settings": tried[best]["settings"], "loo_zero_shot": zero_shot, "tried": tried}
