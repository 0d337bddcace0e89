"""Evaluation on a held-out split: zero-shot classification with prompt ensembling, image<->text
retrieval, a linear probe on frozen image features and, on colour-shape data, attribute-swap foils.

Class prototypes come from the runtime's own `class_prototypes`, so evaluation and deployment build
classifiers the same way. `evaluate` is the trainer's quick check; `full_evaluation` and
`evaluate_checkpoint` are what `clipping-edge eval` and the benchmarks report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from clipping_edge.classifier import TextEncoder, class_prototypes
from clipping_edge.errors import ClippingEdgeError
from clipping_edge.preprocess import Preprocess
from clipping_edge.prompts import template_set
from clipping_edge.tokenizer import TextTokenizer

from .banks import build_banks
from .data.pairs import Mixture, PairSet, SplitSource, ZeroShotTask, read_pairs, resolve_split
from .data.synthetic import COLOURS, SHAPES
from .data.transforms import ImageCaptionDataset, eval_transform
from .locking import cached_text_features, image_tower_as_teacher, no_text_teacher, project_cached, text_tower_as_teacher
from .metrics import retrieval_metrics, zero_shot_metrics
from .models import Student


@dataclass
class TorchEncoder:
    """Two PyTorch towers behind the runtime's encode_text/encode_pixels interface (numpy in and out)."""

    image: torch.nn.Module
    text: torch.nn.Module
    tokenizer: TextTokenizer
    image_size: int | Preprocess  # the size, or how images reach it
    device: torch.device = torch.device("cpu")

    @classmethod
    def from_student(cls, model: Student, tokenizer: TextTokenizer, device: torch.device | str = "cpu") -> "TorchEncoder":
        return cls(model.visual, model.text, tokenizer, model.config.vision.preprocess(), torch.device(device))

    @torch.no_grad()
    def encode_text(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        outs = [self.text(torch.from_numpy(self.tokenizer(texts[i:i + batch_size])).to(self.device)).float().cpu()
                for i in range(0, len(texts), batch_size)]
        return torch.cat(outs).numpy()

    @torch.no_grad()
    def encode_pixels(self, pixels: np.ndarray, batch_size: int = 128) -> np.ndarray:
        outs = [self.image(torch.from_numpy(pixels[i:i + batch_size]).to(self.device)).float().cpu()
                for i in range(0, len(pixels), batch_size)]
        return torch.cat(outs).numpy()

    @torch.no_grad()
    def encode_pairs(self, pairs: PairSet, batch_size: int = 128) -> np.ndarray:
        dataset = ImageCaptionDataset(pairs.pairs, eval_transform(self.image_size))
        loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, collate_fn=lambda b: torch.stack([x[0] for x in b]))
        return torch.cat([self.image(px.to(self.device)).float().cpu() for px in loader]).numpy()


@dataclass
class LockedCacheEncoder(TorchEncoder):
    """A TorchEncoder whose fully locked towers read their features from the cache the trainer keeps for
    them (the fp16 features training projects, keyed by the tower's weights), so a locked run's test
    split costs one 224-px pass ever instead of one per evaluation: per-epoch curves become cheap."""

    image_locked: bool = False
    text_locked: bool = False

    @torch.no_grad()
    def encode_text(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        if not self.text_locked:
            return super().encode_text(texts, batch_size)
        features = cached_text_features(text_tower_as_teacher(self.text, self.tokenizer), list(texts))
        return project_cached(self.text, features.to(self.device)).float().cpu().numpy()

    @torch.no_grad()
    def encode_pairs(self, pairs: PairSet, batch_size: int = 128) -> np.ndarray:
        if not self.image_locked:
            return super().encode_pairs(pairs, batch_size)
        banks = build_banks(pairs, image_tower_as_teacher(self.image, self.image_size), no_text_teacher(),
                            batch_size=batch_size, workers=0, device=self.device)
        features = torch.from_numpy(np.asarray(banks.image, dtype=np.float32)).to(self.device)
        return project_cached(self.image, features).float().cpu().numpy()


def class_positions(classes: Sequence[str], labels: Sequence[str], where: object) -> np.ndarray:
    """Each label's position in `classes`: the column of its class in a zero-shot score matrix."""
    position = {c: i for i, c in enumerate(classes)}
    unknown = sorted(set(labels) - set(position))
    if unknown:
        raise ClippingEdgeError(f"label {unknown[0]!r} of {where} is not among zeroshot.json's classes: "
                                "add it to 'classes' or fix the label")
    return np.asarray([position[label] for label in labels], dtype=np.int64)


def evaluate(model: Student, tokenizer: TextTokenizer, pairs: PairSet, device: torch.device | str = "cpu",
             locked: tuple[bool, bool] = (False, False)) -> dict[str, float]:
    """Zero-shot and retrieval on `pairs`. locked: (image, text) towers locked whole, read from their cache."""
    model.eval()
    encoder = LockedCacheEncoder(model.visual, model.text, tokenizer, model.config.vision.preprocess(),
                                 torch.device(device), *locked)
    image_emb = encoder.encode_pairs(pairs)
    metrics = retrieval_metrics(image_emb, encoder.encode_text(pairs.captions), pairs.captions)
    task = pairs.zero_shot
    if task is not None and all(p.label for p in pairs.pairs):
        labels = class_positions(task.classes, [p.label for p in pairs.pairs], pairs.root)
        held_out = np.isin([p.label for p in pairs.pairs], list(task.held_out))
        subsets = {"held_out": held_out, "seen": ~held_out} if task.held_out else {}
        prototypes = class_prototypes(encoder, task.classes, task.templates, task.synonyms)
        metrics.update(zero_shot_metrics(image_emb, prototypes, labels, subsets))
    return metrics


def format_metrics(metrics: dict[str, float]) -> str:
    return "  ".join(f"{k}={v:.3f}" for k, v in metrics.items())


# --- linear probe -------------------------------------------------------------------------------

L2_GRID: tuple[float, ...] = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)


@dataclass(frozen=True)
class ProbeResult:
    top1: float
    l2: float  # the regularisation strength chosen on the validation split
    val_top1: float
    n_train: int
    n_test: int
    n_classes: int


def fit_logistic_regression(x: np.ndarray, y: np.ndarray, n_classes: int, l2: float, max_iter: int = 300,
                            init: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression, mean cross-entropy + l2/2 |W|^2 (bias unpenalised), fitted
    full-batch with L-BFGS in float64: convex, so any start (`init`: a nearby solution) ends at the same answer."""
    xt = torch.from_numpy(np.asarray(x, np.float64))
    yt = torch.from_numpy(np.asarray(y, np.int64))
    w0, b0 = init if init is not None else (np.zeros((n_classes, xt.shape[1])), np.zeros(n_classes))
    weight = torch.tensor(w0, dtype=torch.float64, requires_grad=True)
    bias = torch.tensor(b0, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=max_iter, history_size=20,
                                  tolerance_grad=1e-7, tolerance_change=1e-10, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(xt @ weight.T + bias, yt) + 0.5 * l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    # A probe's matmuls are tiny: extra threads only add synchronisation, which on a busy machine made
    # a fit 50x slower. Large probes keep the thread pool.
    threads = torch.get_num_threads()
    torch.set_num_threads(1 if xt.numel() * n_classes < 50_000_000 else threads)
    try:
        with torch.enable_grad():
            optimizer.step(closure)
    finally:
        torch.set_num_threads(threads)
    return weight.detach().numpy(), bias.detach().numpy()


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def linear_probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                 l2_grid: Sequence[float] = L2_GRID, val_fraction: float = 0.2, seed: int = 0) -> ProbeResult:
    """Top-1 of a logistic regression on L2-normalised frozen features. Labels are class indices;
    the regularisation strength is chosen on a validation split carved from train, then refitted on all of it."""
    train_x, test_x = _normalise(train_x), _normalise(test_x)
    n_classes = int(max(train_y.max(), test_y.max(initial=0))) + 1
    order = np.random.default_rng(seed).permutation(len(train_x))
    n_val = min(len(train_x) - 1, max(1, round(val_fraction * len(train_x))))
    val, fit = order[:n_val], order[n_val:]
    best_l2, best_val, best_fit, previous = l2_grid[-1], -1.0, None, None
    # Strongest first, each fit starting from the last (a regularisation path: few L-BFGS steps each);
    # a tie keeps the simpler model.
    for l2 in sorted(l2_grid, reverse=True):
        previous = fit_logistic_regression(train_x[fit], train_y[fit], n_classes, l2, init=previous)
        w, b = previous
        accuracy = float(((train_x[val] @ w.T + b).argmax(1) == train_y[val]).mean())
        if accuracy > best_val:
            best_l2, best_val, best_fit = l2, accuracy, previous
    w, b = fit_logistic_regression(train_x, train_y, n_classes, best_l2, init=best_fit)
    top1 = float(((test_x @ w.T + b).argmax(1) == test_y).mean()) if len(test_y) else float("nan")
    return ProbeResult(top1, best_l2, best_val, len(train_x), len(test_x), len(np.unique(train_y)))


# --- attribute-swap foils ------------------------------------------------------------------------

def colour_shape_labels(labels: Sequence[str]) -> list[tuple[str, str]] | None:
    """(colour, shape) per label when every label is '<colour> <shape>' of the synthetic set, else None."""
    parsed = [tuple(label.split()) for label in labels]
    ok = bool(parsed) and all(len(p) == 2 and p[0] in COLOURS and p[1] in SHAPES for p in parsed)
    return [(c, s) for c, s in parsed] if ok else None


def foil_caption(colour: str, shape: str) -> str:
    """A caption as the synthetic set writes them: 'a photo of a red triangle.', 'a photo of an orange star.'"""
    phrase = f"{colour} {shape}"
    return f"a photo of {'an' if phrase[0] in 'aeiou' else 'a'} {phrase}."


def attribute_foil_metrics(encoder: TextEncoder, image_emb: np.ndarray, labels: Sequence[str],
                           held_out: Sequence[str] = ()) -> dict[str, float]:
    """Does the image's true caption beat every caption with one attribute swapped? Colour foils keep the
    shape and change the colour, shape foils the reverse; `foil_acc` needs both. Ties count as misses."""
    parsed = colour_shape_labels(labels)
    if parsed is None:
        raise ClippingEdgeError("attribute-swap foils need labels of the form '<colour> <shape>' "
                                f"(colours {', '.join(COLOURS)}; shapes {', '.join(SHAPES)})")
    colours, shapes = list(COLOURS), list(SHAPES)
    texts = [foil_caption(c, s) for c in colours for s in shapes]
    text_emb = encoder.encode_text(texts).reshape(len(colours), len(shapes), -1)
    scores = np.einsum("nd,csd->ncs", image_emb, text_emb)
    rows = np.arange(len(parsed))
    ci = np.asarray([colours.index(c) for c, _ in parsed])
    si = np.asarray([shapes.index(s) for _, s in parsed])
    true = scores[rows, ci, si]
    colour_foils = scores[rows, :, si]  # (N, colours): same shape, every colour
    shape_foils = scores[rows, ci, :]   # (N, shapes): same colour, every shape
    colour_foils[rows, ci] = -np.inf
    shape_foils[rows, si] = -np.inf
    colour_ok, shape_ok = true > colour_foils.max(1), true > shape_foils.max(1)
    both = colour_ok & shape_ok
    out = {"foil_colour_acc": float(colour_ok.mean()), "foil_shape_acc": float(shape_ok.mean()),
           "foil_acc": float(both.mean())}
    unseen = np.isin(np.asarray(labels), list(held_out))
    if unseen.any():
        out["foil_acc_held_out"] = float(both[unseen].mean())
    return out


# --- the full report ----------------------------------------------------------------------------

@dataclass
class EvalReport:
    metrics: dict[str, float]  # fractions in [0, 1]
    info: dict[str, Any] = field(default_factory=dict)  # what was measured on what: sizes, templates, probe fit
    notes: list[str] = field(default_factory=list)  # parts skipped, and why

    def to_json(self) -> dict[str, Any]:
        return {**self.info, "metrics": self.metrics, "notes": self.notes}


def _test_labels(pairs: PairSet) -> list[str] | None:
    """Every pair's label, or None when the split has none; a half-labelled split is an error."""
    labels = [p.label for p in pairs.pairs]
    missing = sum(label is None for label in labels)
    if missing == len(labels):
        return None
    if missing:
        raise ClippingEdgeError(f"{missing} of {len(labels)} pairs in {pairs.root} have no label: "
                                "label every pair of the split or none")
    return labels  # type: ignore[return-value]


def _probe(encoder: TorchEncoder, train_pairs: PairSet, test_labels: Sequence[str], image_emb: np.ndarray,
           limit: int, seed: int) -> tuple[dict[str, float], dict[str, Any], list[str]]:
    labelled = [p for p in train_pairs.pairs if p.label]
    if not labelled:
        return {}, {}, [f"linear probe skipped: the train split {train_pairs.root} has no label column"]
    if len(labelled) > limit:  # a random subset: a class-sorted captions.csv must not give the first classes only
        keep = np.sort(np.random.default_rng(seed).choice(len(labelled), limit, replace=False))
        labelled = [labelled[i] for i in keep]
    classes = sorted({p.label for p in labelled})
    if len(classes) < 2:
        return {}, {}, [f"linear probe skipped: the train split has only one class ({classes[0]})"]
    position = {c: i for i, c in enumerate(classes)}
    scored = np.asarray([label in position for label in test_labels])
    notes = []
    if not scored.all():
        notes.append(f"linear probe: {int((~scored).sum())} test images of classes absent from the train labels "
                     "are not scored (a probe cannot predict them)")
    if not scored.any():
        return {}, {}, notes + ["linear probe skipped: no test class occurs in the train labels"]
    train_x = encoder.encode_pairs(PairSet(train_pairs.root, labelled, train_pairs.zero_shot))
    train_y = np.asarray([position[p.label] for p in labelled])
    test_y = np.asarray([position[label] for label, ok in zip(test_labels, scored) if ok])
    result = linear_probe(train_x, train_y, image_emb[scored], test_y, seed=seed)
    info = {"probe_train_images": result.n_train, "probe_test_images": result.n_test, "probe_classes": result.n_classes,
            "probe_l2": result.l2, "probe_val_top1": result.val_top1}
    return {"linear_probe_top1": result.top1}, info, notes


def full_evaluation(model: Student, tokenizer: TextTokenizer, pairs: PairSet, device: torch.device | str = "cpu",
                    templates: str | None = None, train_pairs: PairSet | None = None, probe_limit: int = 5000,
                    seed: int = 0) -> EvalReport:
    """Everything `evaluate` measures, with a choice of prompt set, plus the linear probe (when
    `train_pairs` is given) and attribute-swap foils (when labels are '<colour> <shape>').

    `templates`: 'dataset', '7' or '80'; None is 'dataset' without insisting on labels, while a set
    named explicitly makes a split without labels an error rather than a note."""
    task = pairs.zero_shot
    template_set(templates or "dataset")  # an unknown name fails before any encoding
    labels = _test_labels(pairs)
    if labels is None and templates is not None:
        raise ClippingEdgeError(f"{pairs.root} has no label column, so there is no zero-shot task for --templates: "
                                "add labels (and zeroshot.json) or evaluate retrieval only")
    model.eval()
    encoder = TorchEncoder.from_student(model, tokenizer, device)
    image_emb = encoder.encode_pairs(pairs)
    metrics = retrieval_metrics(image_emb, encoder.encode_text(pairs.captions), pairs.captions)
    info: dict[str, Any] = {"images": len(pairs)}
    notes: list[str] = []
    if labels is None:
        notes.append(f"zero-shot and foils skipped: {pairs.root} has no label column")
    else:
        if task is None:  # labels without zeroshot.json: the classes are the labels themselves
            task = ZeroShotTask(classes=sorted(set(labels)))
            notes.append("no zeroshot.json: the classes are the split's labels")
        index = class_positions(task.classes, labels, pairs.root)
        prompts = template_set(templates or "dataset", task.templates)
        held_out = np.isin(labels, list(task.held_out))
        subsets = {"held_out": held_out, "seen": ~held_out} if held_out.any() else {}
        prototypes = class_prototypes(encoder, task.classes, prompts, task.synonyms)
        metrics.update(zero_shot_metrics(image_emb, prototypes, index, subsets))
        info.update(classes=len(task.classes), templates=templates or "dataset", prompts_per_name=len(prompts))
        if colour_shape_labels(labels) is not None:
            metrics.update(attribute_foil_metrics(encoder, image_emb, labels, task.held_out))
        else:
            notes.append("attribute-swap foils skipped: the labels are not '<colour> <shape>'")
    if train_pairs is not None and labels is not None:
        probe_metrics, probe_info, probe_notes = _probe(encoder, train_pairs, labels, image_emb, probe_limit, seed)
        metrics.update(probe_metrics)
        info.update(probe_info)
        notes += probe_notes
    elif train_pairs is not None:
        notes.append("linear probe skipped: the evaluated split has no labels to score it on")
    return EvalReport(metrics, info, notes)


def _train_split(data: str, evaluated: SplitSource) -> tuple[PairSet | None, str | None]:
    """The dataset's train split for the probe (a mixture's first dataset), or why there is none."""
    try:
        source = resolve_split(data, "train")
    except ClippingEdgeError as exc:
        return None, f"linear probe skipped: {exc}"
    if isinstance(source, Mixture):
        source = source.parts[0]
    if source == evaluated:
        return None, "linear probe skipped: the dataset has no train split apart from the evaluated one"
    return read_pairs(source), None


def evaluate_checkpoint(checkpoint: str | Path, data: str | None = None, split: str = "test",
                        templates: str | None = None, probe: bool = True, probe_limit: int = 5000,
                        device: str = "cpu") -> EvalReport:
    """Load a checkpoint and run `full_evaluation` on a split of `data` (default: its training data)."""
    from .checkpoint import load_student

    if probe_limit < 2:
        raise ClippingEdgeError(f"--probe-limit {probe_limit} is too small: pass at least 2 (default 5000)")
    template_set(templates or "dataset")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        torch.device(device)
    except RuntimeError:
        raise ClippingEdgeError(f"unknown device {device!r}: use cpu, cuda, cuda:N or auto") from None
    model, tokenizer, meta = load_student(checkpoint)
    model.to(device)
    data = data or meta.get("train", {}).get("data", "synthetic")
    source = resolve_split(data, split)
    train_pairs, note = _train_split(data, source) if probe else (None, None)
    report = full_evaluation(model, tokenizer, read_pairs(source), device, templates, train_pairs, probe_limit)
    report.info = {"checkpoint": str(checkpoint), "data": str(data), "split": split, **report.info}
    if note:
        report.notes.append(note)
    return report


def _percent(value: float) -> str:
    return "    n/a" if value != value else f"{100 * value:5.1f} %"


# (group, row label, metric keys shown side by side)
REPORT_ROWS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("zero-shot", "top-1", ("zero_shot_top1",)),
    ("zero-shot", "top-5", ("zero_shot_top5",)),
    ("zero-shot", "top-1, classes seen in training", ("zero_shot_top1_seen",)),
    ("retrieval", "image→text R@1 / R@5 / R@10", ("image_to_text_R@1", "image_to_text_R@5", "image_to_text_R@10")),
    ("retrieval", "text→image R@1 / R@5 / R@10", ("text_to_image_R@1", "text_to_image_R@5", "text_to_image_R@10")),
    ("linear probe", "top-1", ("linear_probe_top1",)),
    ("composition", "held-out compositions, zero-shot top-1", ("zero_shot_top1_held_out",)),
    ("composition", "attribute-swap foils: colour", ("foil_colour_acc",)),
    ("composition", "attribute-swap foils: shape", ("foil_shape_acc",)),
    ("composition", "attribute-swap foils: both", ("foil_acc",)),
    ("composition", "attribute-swap foils: both, held-out", ("foil_acc_held_out",)),
)


def format_report(report: EvalReport) -> str:
    """The report as a table grouped by kind of metric, then the notes."""
    info = report.info
    head = f"{info.get('checkpoint', 'model')} on {info.get('data', '?')} [{info.get('split', '?')}]: {info['images']} images"
    if "classes" in info:
        head += f", {info['classes']} classes"
    details = {"zero-shot": f"templates: {info.get('templates')}, {info.get('prompts_per_name')} per class name",
               "linear probe": (f"logistic regression on {info.get('probe_train_images')} train images, "
                                f"{info.get('probe_classes')} classes, l2 {info.get('probe_l2', 0):g} chosen on a "
                                "validation split")}
    rows = [(group, label, " / ".join(_percent(report.metrics[k]) for k in keys))
            for group, label, keys in REPORT_ROWS if all(k in report.metrics for k in keys)]
    width = max((len(label) for _, label, _ in rows), default=0)
    lines, group = [head], None
    for g, label, value in rows:
        if g != group:
            lines.append(f"{g} ({details[g]})" if g in details else g)
            group = g
        lines.append(f"  {label:<{width}}  {value}")
    lines += [f"note: {note}" for note in report.notes]
    return "\n".join(lines)
