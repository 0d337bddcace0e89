"""Golden vectors: what a correct port of a bundle must reproduce, in files any language reads.

Every bundle's `golden/` folder holds a few sample images as their file bytes, and `golden.json` names
what each step must give for them: the preprocessed pixels, the image tower's embeddings, a few prompts
with their token ids and text embeddings, the labels' prototypes (the bundle's templates and synonyms)
and the expected top-k with scores. Arrays are raw little-endian C-order files (`.f32` float32, `.i32`
int32) whose shape golden.json gives: no npy, no pickle, nothing a Swift, Kotlin or JavaScript port
cannot read in a few lines. The values are the exported towers' own outputs (their runtime here, or
the PyTorch stand-in for Core ML off macOS), so a port of the same files should match them to the
tolerances golden.json states. `clipping-edge verify BUNDLE` re-checks them with the bundle's backend.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from .classifier import class_prototypes, row_cosines, softmax
from .fewshot import Shots, fit
from .errors import ClippingEdgeError
from .manifest import resolve_inside, verified_file
from .preprocess import Preprocess, preprocess_batch
from .prompts import fill

GOLDEN_DIR = "golden"
GOLDEN_JSON = f"{GOLDEN_DIR}/golden.json"
FORMAT = "clipping-edge golden vectors 1"
DTYPES = {".f32": "<f4", ".i32": "<i4"}
TOP_K = 3


def _write_array(folder: Path, name: str, array: np.ndarray) -> dict:
    suffix = ".i32" if np.issubdtype(array.dtype, np.integer) else ".f32"
    data = np.ascontiguousarray(array, dtype=DTYPES[suffix])
    (folder / f"{name}{suffix}").write_bytes(data.tobytes())
    return {"file": f"{name}{suffix}", "dtype": "int32" if suffix == ".i32" else "float32", "shape": list(data.shape)}


def _inside(folder: Path, name: object) -> Path:
    """A golden file's path, refused before it is opened if it is not a plain path inside the golden folder."""
    if not isinstance(name, str) or not name:
        raise ClippingEdgeError(f"golden.json names a file {str(name)[:60]!r} that is not a path: re-export the bundle")
    return resolve_inside(folder.resolve(), name)


def _read_array(folder: Path, spec: Mapping) -> np.ndarray:
    if not isinstance(spec, Mapping) or Path(str(spec.get("file", ""))).suffix not in DTYPES \
            or not isinstance(spec.get("shape"), list) or not all(isinstance(n, int) and n >= 0 for n in spec["shape"]):
        raise ClippingEdgeError(f"golden.json describes an array as {str(spec)[:80]}, not a .f32/.i32 file with a shape: "
                                "re-export the bundle")
    path = _inside(folder, spec["file"])
    if not path.is_file():
        raise ClippingEdgeError(f"golden array {path.name} is not a file in {folder}: re-export the bundle")
    raw = path.read_bytes()
    if len(raw) % 4:
        raise ClippingEdgeError(f"{path} is {len(raw)} bytes, not whole 4-byte values: re-export the bundle")
    data = np.frombuffer(raw, dtype=DTYPES[Path(spec["file"]).suffix])
    if data.size != int(np.prod(spec["shape"])):
        raise ClippingEdgeError(f"{path} holds {data.size} values, golden.json says {spec['shape']}: re-export the bundle")
    return data.reshape(spec["shape"])


def top_k(embeddings: np.ndarray, prototypes: np.ndarray, labels: Sequence[str], logit_scale: float, k: int = TOP_K) -> list:
    probs = softmax(logit_scale * embeddings @ prototypes.T)
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return [[{"label": labels[c], "score": float(p[c])} for c in row] for row, p in zip(order, probs)]


class _Texts:
    def __init__(self, encode: Callable[[list[str]], np.ndarray]):
        self.encode_text = encode


# The few-shot heads a port must reproduce on the golden shots: each method at settings that use the shots.
FEWSHOT_SETTINGS = {"mix": {"alpha": 0.5}, "tip": {"beta": 5.5, "weight": 0.5}, "lda": {"gamma": 0.5, "shrinkage": 0.5}}


def write_golden(folder: Path, images: Sequence[bytes], suffixes: Sequence[str], labels: Sequence[str],
                 templates: Sequence[str], synonyms: Mapping[str, Sequence[str]], image_size: int | Preprocess, logit_scale: float,
                 encode_pixels: Callable[[np.ndarray], np.ndarray], encode_text: Callable[[list[str]], np.ndarray],
                 tokenize: Callable[[list[str]], np.ndarray], min_cosine: dict[str, float],
                 score_max_abs: float = 0.02, shots: Sequence[tuple[bytes, str, int]] = ()) -> None:
    """Write golden/ for these sample images (file bytes) and labels, with the towers as exported. `shots` (file
    bytes, suffix, label position) add few-shot golden vectors: every head method on those shots."""
    (folder / "images").mkdir(parents=True)
    files = []
    for i, (data, suffix) in enumerate(zip(images, suffixes)):
        files.append(f"images/{i}{suffix}")
        (folder / files[-1]).write_bytes(data)
    pixels = preprocess_batch(list(images), image_size)
    image_embeddings = np.asarray(encode_pixels(pixels), np.float32)
    prompts = [fill(templates[0], label) for label in labels[:4]]
    text_embeddings = np.asarray(encode_text(prompts), np.float32)
    prototypes = class_prototypes(_Texts(encode_text), labels, templates, synonyms)
    arrays = {name: _write_array(folder, name, array) for name, array in (
        ("pixels", pixels), ("image_embeddings", image_embeddings), ("token_ids", np.asarray(tokenize(prompts), np.int32)),
        ("text_embeddings", text_embeddings), ("prototypes", prototypes))}
    golden = {
        "format": FORMAT,
        "about": "arrays: raw little-endian C-order files; pixels are the preprocessed images (RGB in [0, 1], "
                 "N x 3 x S x S); prototypes: per label every template x synonym embedded, normalised, averaged, "
                 "normalised; scores: softmax(logit_scale * cosine) over the labels",
        "images": files, "prompts": prompts, "labels": list(labels), "templates": list(templates),
        "synonyms": {k: list(v) for k, v in synonyms.items() if k in labels}, "logit_scale": logit_scale,
        "arrays": arrays, "expected_top_k": top_k(image_embeddings, prototypes, labels, logit_scale),
        # A port's figures must reach these; pixels may differ by a resampling step (bicubic is not bit-exact).
        "tolerances": {"pixels_max_abs": 0.02, "image_min_cosine": min_cosine["image"],
                       "text_min_cosine": min_cosine["text"], "score_max_abs": score_max_abs},
    }
    if shots:
        golden["fewshot"] = _write_fewshot(folder, shots, prototypes, image_embeddings, labels, image_size, logit_scale,
                                           encode_pixels)
    (folder / "golden.json").write_text(json.dumps(golden, indent=2, ensure_ascii=False), encoding="utf-8")


def _write_fewshot(folder: Path, shots: Sequence[tuple[bytes, str, int]], prototypes: np.ndarray, queries: np.ndarray,
                   labels: Sequence[str], image_size, logit_scale: float, encode_pixels) -> dict:
    (folder / "shots").mkdir()
    files = []
    for i, (data, suffix, _) in enumerate(shots):
        files.append(f"shots/{i}{suffix}")
        (folder / files[-1]).write_bytes(data)
    embeddings = np.asarray(encode_pixels(preprocess_batch([data for data, _, _ in shots], image_size)), np.float32)
    shot_labels = [label for _, _, label in shots]
    data = Shots(prototypes, np.ones(len(labels), bool), embeddings, np.asarray(shot_labels))
    heads = {method: {"settings": settings,
                      "expected_top_k": _top_k_of(softmax(fit(method, data, logit_scale, settings).logits(queries)), labels)}
             for method, settings in FEWSHOT_SETTINGS.items()}
    return {"about": "each method's head (clipping_edge/fewshot.py) fitted on these shots, with the text prototypes above, "
                     "then the golden images scored: softmax(head logits)",
            "shots": files, "shot_labels": shot_labels, "has_text": [True] * len(labels),
            "arrays": {"shot_embeddings": _write_array(folder, "shot_embeddings", embeddings)}, "heads": heads}


def _top_k_of(probs: np.ndarray, labels: Sequence[str], k: int = TOP_K) -> list:
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return [[{"label": labels[c], "score": float(p[c])} for c in row] for row, p in zip(order, probs)]


def _verify_fewshot(model, folder: Path, golden: dict, prototypes: np.ndarray, image: np.ndarray, tolerance: dict) -> dict:
    """The few-shot heads re-fitted from the golden shots as this runtime embeds them, against the golden scores."""
    section = golden["fewshot"]
    shots = [_inside(folder, name).read_bytes() for name in section["shots"]]
    expected_embeddings = _read_array(folder, section["arrays"]["shot_embeddings"])
    embeddings = model.encode_pixels(preprocess_batch(shots, model.manifest.image_preprocess()))
    data = Shots(prototypes, np.asarray(section["has_text"], bool), embeddings, np.asarray(section["shot_labels"]))
    worst, different = 0.0, []
    for method, head in section["heads"].items():
        found = _top_k_of(softmax(fit(method, data, golden["logit_scale"], head["settings"]).logits(image)), golden["labels"])
        worst = max(worst, max(abs(f["score"] - e["score"]) for fr, er in zip(found, head["expected_top_k"])
                               for f, e in zip(fr, er)))
        different += [f"{method}:{i}" for i, (f, e) in enumerate(zip(found, head["expected_top_k"])) if f[0]["label"] != e[0]["label"]]
    return {"fewshot_shot_cosine_min": float(row_cosines(embeddings, expected_embeddings).min()),
            "fewshot_score_max_abs": worst, "fewshot_top1_different": different}


def _finite(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)


# key -> what a valid value is, checked before anything is read or compared
GOLDEN_SCHEMA: dict[str, tuple[Callable[[object], bool], str]] = {
    "images": (lambda v: isinstance(v, list) and bool(v) and all(isinstance(x, str) for x in v), "a list of file names"),
    "prompts": (lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v), "a list of texts"),
    "labels": (lambda v: isinstance(v, list) and bool(v) and all(isinstance(x, str) for x in v), "a list of labels"),
    "templates": (lambda v: isinstance(v, list) and bool(v) and all(isinstance(x, str) for x in v), "a list of templates"),
    "synonyms": (lambda v: isinstance(v, dict), "an object"),
    "logit_scale": (_finite, "a finite number"),
    "arrays": (lambda v: isinstance(v, dict) and {"pixels", "image_embeddings", "token_ids", "text_embeddings",
                                                   "prototypes"} <= set(v), "an object of the five arrays"),
    "expected_top_k": (lambda v: isinstance(v, list) and bool(v), "a list of rankings"),
    "tolerances": (lambda v: isinstance(v, dict) and all(_finite(v.get(k)) for k in
                                                          ("pixels_max_abs", "image_min_cosine", "text_min_cosine", "score_max_abs")),
                   "an object of finite numbers"),
}


def check_golden(golden: object, path: Path) -> None:
    if not isinstance(golden, dict) or golden.get("format") != FORMAT:
        raise ClippingEdgeError(f"{path} is not {FORMAT!r}: re-export the bundle")
    for key, (valid, expected) in GOLDEN_SCHEMA.items():
        if not valid(golden.get(key)):
            raise ClippingEdgeError(f"{path}: {key} is {str(golden.get(key))[:60]!r}, expected {expected}: the golden "
                                    "file is damaged; re-export the bundle")


def verify(model, encode_pixels: Callable[[np.ndarray], np.ndarray] | None = None,
           preprocess: Callable[[list[bytes], Preprocess], np.ndarray] = preprocess_batch) -> dict:
    """Re-compute a bundle's golden vectors with its own backend (or the given steps, to check a port's
    pieces) and compare: the worst cosine per tower, pixel and score differences, token-id and top-k
    mismatches, and whether all are within golden.json's tolerances."""
    manifest, root = model.manifest, model.root
    if not manifest.golden:
        raise ClippingEdgeError(f"bundle {root} has no golden vectors (exported before they existed): re-export it")
    folder = verified_file(manifest, root, GOLDEN_DIR)
    path = resolve_inside(root, manifest.golden)
    try:
        golden = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError, IsADirectoryError) as exc:
        raise ClippingEdgeError(f"{path} is not JSON ({exc}): re-export the bundle") from None
    check_golden(golden, path)
    arrays = {name: _read_array(folder, spec) for name, spec in golden["arrays"].items()}
    images = [_inside(folder, name).read_bytes() for name in golden["images"]]
    tolerance = golden["tolerances"]

    pixels = preprocess(images, manifest.image_preprocess())
    image = (encode_pixels or model.encode_pixels)(arrays["pixels"])
    ids = model.tokenizer(golden["prompts"])
    text = model.encode_text(golden["prompts"])
    prototypes = class_prototypes(model, golden["labels"], golden["templates"], golden["synonyms"])
    found = top_k(image, prototypes, golden["labels"], golden["logit_scale"])
    expected = golden["expected_top_k"]
    report = {
        "images": len(images), "prompts": len(golden["prompts"]), "labels": len(golden["labels"]),
        "pixels_max_abs": float(np.abs(pixels - arrays["pixels"]).max()),
        "image_cosine_min": float(row_cosines(image, arrays["image_embeddings"]).min()),
        "text_cosine_min": float(row_cosines(text, arrays["text_embeddings"]).min()),
        "prototype_cosine_min": float(row_cosines(prototypes, arrays["prototypes"]).min()),
        "token_id_rows_different": int((ids != arrays["token_ids"]).any(axis=1).sum()),
        "top_k_different": [i for i, (f, e) in enumerate(zip(found, expected)) if [p["label"] for p in f] != [p["label"] for p in e]],
        "score_max_abs": float(max(abs(f["score"] - e["score"]) for fr, er in zip(found, expected) for f, e in zip(fr, er))),
    }
    checks = []
    if "fewshot" in golden:
        report.update(_verify_fewshot(model, folder, golden, prototypes, image, tolerance))
        checks = [("few-shot shots", report["fewshot_shot_cosine_min"] >= tolerance["image_min_cosine"]),
                  ("few-shot top-1", not report["fewshot_top1_different"]),
                  ("few-shot scores", report["fewshot_score_max_abs"] <= tolerance["score_max_abs"])]
    # Written as "not (value passes)" so that NaN fails.
    failures = [name for name, ok in (*checks, 
        ("pixels", report["pixels_max_abs"] <= tolerance["pixels_max_abs"]),
        ("image embeddings", report["image_cosine_min"] >= tolerance["image_min_cosine"]),
        ("text embeddings", report["text_cosine_min"] >= tolerance["text_min_cosine"]),
        ("prototypes", report["prototype_cosine_min"] >= tolerance["text_min_cosine"]),
        ("token ids", report["token_id_rows_different"] == 0),
        ("top-1", all(f[0]["label"] == e[0]["label"] for f, e in zip(found, expected))),
        ("scores", report["score_max_abs"] <= tolerance["score_max_abs"])) if not ok]
    return {**report, "tolerances": tolerance, "failures": failures, "passed": not failures}
