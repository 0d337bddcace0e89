"""The bundle manifest: what a bundle holds and how to run it.

A bundle is a directory with the two towers, `tokenizer.json` and `manifest.json`. The manifest is
the only thing the runtime trusts; it is checked against one schema (types and ranges) when read,
every path in it must stay inside the bundle directory, and every file it lists is checked against
the SHA-256 it records before a backend reads it. The text tower may be left out of a bundle that
classifies from a prototype index.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import ClippingEdgeError
from .preprocess import RESIZE_MODES, FILTERS, Preprocess

FORMAT_VERSION = 2
MANIFEST_NAME = "manifest.json"
# Largest logit scale a manifest may carry: training clamps it at 100.
MAX_LOGIT_SCALE = 100.0


@dataclass
class Manifest:
    model_name: str
    embed_dim: int
    image_size: int
    context_length: int
    # exp() of the trained logit scale, clamped as in training: scores = softmax(logit_scale * cos).
    logit_scale: float
    target: str
    precision: str
    # Paths relative to the bundle directory.
    image_tower: str
    text_tower: str
    tokenizer: str = "tokenizer.json"
    # Identifies the trained weights: a prototype index built from one bundle refuses another's.
    fingerprint: str = ""
    # Preprocessing the runtime applies before the image graph (mean/std live inside the graph).
    preprocess: dict[str, Any] = field(default_factory=dict)
    quantization: dict[str, Any] = field(default_factory=dict)
    parity: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    # Bundle-relative path -> SHA-256 of every file the bundle holds besides the manifest.
    files: dict[str, str] = field(default_factory=dict)
    # Token ids the text tower was trained on; None: every id (a pretrained text tower).
    trained_token_ids: list[int] | None = None
    # `classify --min-cosine auto`: the junk images' embeddings (junk.py; a bundle-relative .f32 file), the rule,
    # and how it did at export on the validation images and on fresh junk.
    unknown: dict[str, Any] = field(default_factory=dict)
    # The prompts the bundle was validated with (its validation data's zeroshot.json): a classifier built
    # without templates uses these, so it scores as the export's parity did. Empty: CLIP's 7 templates.
    templates: list[str] = field(default_factory=list)
    synonyms: dict[str, list[str]] = field(default_factory=dict)
    # Bundle-relative path of the golden vectors' description (golden/golden.json; see golden.py): sample
    # images and what every step must give for them, for ports to other languages and `clipping-edge verify`.
    golden: str = ""
    # The app-ready classifier (`export --labels`): one graph image -> class probabilities, its labels,
    # input and output, parity with the two-tower path and the format's extras (see export/classifier.py).
    classifier: dict[str, Any] = field(default_factory=dict)
    # A sigmoid model (SigLIP, imported): its own logit scale (unclamped) and bias, so that a label's match
    # probability, independent of the other labels, is sigmoid(logit_scale * cos + logit_bias). Scores stay
    # softmax(logit_scale * cos) over the labels, which ranks the same. Empty for a softmax model.
    sigmoid: dict[str, float] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def image_preprocess(self) -> Preprocess:
        """How the runtime turns an image into the image tower's input (bundles before `mode` existed: bicubic, shortest)."""
        return Preprocess(self.image_size, self.preprocess.get("mode", "shortest"), self.preprocess.get("interpolation", "bicubic"))

    @classmethod
    def from_json(cls, data: Any, where: str = "manifest") -> "Manifest":
        check_schema(data, where)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def _positive_int(limit: int):
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 < v <= limit


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _finite_scale(v: Any) -> bool:
    return _finite(v) and 0 < v <= MAX_LOGIT_SCALE


def _text(v: Any) -> bool:
    return isinstance(v, str) and 0 < len(v) <= 4096


def _hashes(v: Any) -> bool:
    return isinstance(v, dict) and all(_text(k) and isinstance(h, str) and len(h) == 64 for k, h in v.items())


# field -> (required, check, what a valid value is)
SCHEMA: dict[str, tuple[bool, Any, str]] = {
    "format_version": (True, lambda v: v == FORMAT_VERSION, f"{FORMAT_VERSION}"),
    "model_name": (True, _text, "a name"),
    "embed_dim": (True, _positive_int(65_536), "an integer in 1..65536"),
    "image_size": (True, _positive_int(4096), "an integer in 1..4096"),
    "context_length": (True, _positive_int(4096), "an integer in 1..4096"),
    "logit_scale": (True, _finite_scale, f"a finite number in (0, {MAX_LOGIT_SCALE:g}]"),
    "target": (True, _text, "a target name"),
    "precision": (True, _text, "a precision name"),
    "image_tower": (True, _text, "a bundle-relative path"),
    "text_tower": (True, _text, "a bundle-relative path"),
    "tokenizer": (False, _text, "a bundle-relative path"),
    "fingerprint": (False, lambda v: isinstance(v, str), "a string"),
    "preprocess": (False, lambda v: isinstance(v, dict) and v.get("mode", "shortest") in RESIZE_MODES
                   and v.get("interpolation", "bicubic") in FILTERS,
                   f"an object whose mode is one of {', '.join(RESIZE_MODES)} and interpolation one of {', '.join(FILTERS)}"),
    "quantization": (False, lambda v: isinstance(v, dict) and all(isinstance(v.get(k, {}), dict) for k in ("image", "text")),
                     "an object whose image and text entries are objects"),
    "parity": (False, lambda v: isinstance(v, dict), "an object"),
    "versions": (False, lambda v: isinstance(v, dict), "an object"),
    "files": (True, _hashes, "an object of path -> SHA-256 hex"),
    "unknown": (False, lambda v: isinstance(v, dict) and (not v.get("junk") or _text(v["junk"])), "an object"),
    "templates": (False, lambda v: isinstance(v, list) and all(_text(t) for t in v), "a list of templates"),
    "synonyms": (False, lambda v: isinstance(v, dict) and all(_text(k) and isinstance(n, list) and all(_text(x) for x in n)
                                                               for k, n in v.items()), "an object of label -> names"),
    "golden": (False, lambda v: v == "" or _text(v), "a bundle-relative path"),
    "classifier": (False, lambda v: isinstance(v, dict), "an object"),
    "sigmoid": (False, lambda v: isinstance(v, dict) and (not v or (set(v) == {"logit_scale", "logit_bias"}
                                                                   and all(map(_finite, v.values())))),
                "an object of finite logit_scale and logit_bias, or empty"),
    "trained_token_ids": (False, lambda v: v is None or (isinstance(v, list) and all(isinstance(i, int) for i in v)),
                          "null or a list of token ids"),
}


def check_schema(data: Any, where: str) -> None:
    if not isinstance(data, dict):
        raise ClippingEdgeError(f"{where} is not a JSON object: re-export the bundle with `clipping-edge export`")
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise ClippingEdgeError(
            f"{where} has bundle format version {version!r}, this clipping-edge reads version {FORMAT_VERSION}: "
            "re-export the bundle with this version, or install the clipping-edge that wrote it")
    for name, (required, valid, expected) in SCHEMA.items():
        if name not in data:
            if required:
                raise ClippingEdgeError(f"{where} is missing {name}: re-export the bundle with `clipping-edge export`")
            continue
        if not valid(data[name]):
            raise ClippingEdgeError(f"{where}: {name} is {str(data[name])[:60]!r}, expected {expected}: "
                                    "the manifest is corrupt; re-export the bundle")


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, or of a directory (an .mlpackage) as its sorted relative paths and contents."""
    digest = hashlib.sha256()
    items = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for item in items:
        if path.is_dir():
            digest.update(item.relative_to(path).as_posix().encode() + b"\0")
        with open(item, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def read_manifest(bundle: str | Path) -> tuple[Manifest, Path]:
    """Read and check a bundle's manifest. Returns the manifest and the resolved bundle directory."""
    root = Path(bundle)
    if not root.exists():  # an export that crashed between its two renames left the finished bundle beside its name
        from .atomic import recover

        recover(root)
    if not root.exists():
        raise ClippingEdgeError(f"bundle {root} does not exist: pass the directory written by `clipping-edge export`")
    if root.is_file() and root.name == MANIFEST_NAME:
        root = root.parent
    path = root / MANIFEST_NAME
    if not path.is_file():
        raise ClippingEdgeError(f"{root} has no {MANIFEST_NAME}: pass the directory written by `clipping-edge export`")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ClippingEdgeError(f"{path} is not valid JSON ({exc}): re-export the bundle") from None
    manifest = Manifest.from_json(data, str(path))
    root = root.resolve()
    for name in (manifest.image_tower, manifest.tokenizer):
        resolve_inside(root, name)
    for name in (manifest.text_tower, *manifest.files, *([manifest.unknown["junk"]] if manifest.unknown.get("junk") else [])):
        resolve_inside(root, name, must_exist=False)
    for name in (manifest.image_tower, manifest.text_tower, manifest.tokenizer):
        if name not in manifest.files:
            raise ClippingEdgeError(f"{path} records no checksum for {name}: re-export the bundle")
    return manifest, root


def resolve_inside(root: Path, relative: str, must_exist: bool = True) -> Path:
    """Resolve a manifest path, refusing any that leaves the bundle directory or does not exist."""
    path = (root / relative).resolve()
    if root != path and root not in path.parents:
        raise ClippingEdgeError(f"manifest path {relative!r} points outside the bundle {root}: the manifest is corrupt or hostile")
    if must_exist and not path.exists():
        raise ClippingEdgeError(f"bundle file {path} is missing: copy the whole bundle directory, or re-export it")
    return path


def verified_file(manifest: Manifest, root: Path, relative: str) -> Path:
    """The bundle file `relative`, after checking it (and an OpenVINO .xml's .bin) against the manifest."""
    path = resolve_inside(root, relative)
    names = [relative] + ([str(Path(relative).with_suffix(".bin"))] if relative.endswith(".xml") else [])
    for name in names:
        recorded = manifest.files.get(name)
        if recorded is None:
            raise ClippingEdgeError(f"the manifest of {root} records no checksum for {name}: re-export the bundle")
        if file_sha256(resolve_inside(root, name)) != recorded:
            raise ClippingEdgeError(f"bundle file {root / name} does not match the checksum in its manifest (damaged "
                                    "or modified): copy the bundle again, or re-export it")
    return path


# Recorded in each manifest: the versions that made (and first ran) the bundle.
RECORDED_PACKAGES = ("clipping-edge", "torch", "onnx", "onnxscript", "onnxruntime", "openvino", "nncf", "coremltools",
                     "litert-torch", "ai-edge-litert", "ai-edge-quantizer")


def package_versions(names: tuple[str, ...] = RECORDED_PACKAGES) -> dict[str, str]:
    from importlib import metadata  # 40 ms to import: only exports need it, not an app's cold start

    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def size_mb(path: Path) -> float:
    """A file, or a directory such as an .mlpackage, with an OpenVINO .xml counting its .bin."""
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6
    extra = path.with_suffix(".bin") if path.suffix == ".xml" else None
    return (path.stat().st_size + (extra.stat().st_size if extra and extra.exists() else 0)) / 1e6
