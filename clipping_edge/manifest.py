"""The bundle manifest: what a bundle holds and how to run it.

A bundle is a directory with the two towers, `tokenizer.json` and `manifest.json`. The manifest is
the only thing the runtime trusts; every path in it must stay inside the bundle directory.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import ClippingEdgeError

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"


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
    format_version: int = FORMAT_VERSION

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Manifest":
        known = {f for f in cls.__dataclass_fields__}
        missing = [f for f in ("model_name", "embed_dim", "image_size", "context_length", "logit_scale",
                               "target", "precision", "image_tower", "text_tower") if f not in data]
        if missing:
            raise ClippingEdgeError(f"manifest is missing {', '.join(missing)}: re-export the bundle with `clipping-edge export`")
        return cls(**{k: v for k, v in data.items() if k in known})


def read_manifest(bundle: str | Path) -> tuple[Manifest, Path]:
    """Read and check a bundle's manifest. Returns the manifest and the resolved bundle directory."""
    root = Path(bundle)
    if not root.exists():
        raise ClippingEdgeError(f"bundle {root} does not exist: pass the directory written by `clipping-edge export`")
    if root.is_file() and root.name == MANIFEST_NAME:
        root = root.parent
    path = root / MANIFEST_NAME
    if not path.is_file():
        raise ClippingEdgeError(f"{root} has no {MANIFEST_NAME}: pass the directory written by `clipping-edge export`")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ClippingEdgeError(f"{path} is not valid JSON ({exc}): re-export the bundle") from None
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise ClippingEdgeError(
            f"{path} has bundle format version {version!r}, this clipping-edge reads version {FORMAT_VERSION}: "
            "re-export the bundle with this version, or install the clipping-edge that wrote it"
        )
    manifest = Manifest.from_json(data)
    root = root.resolve()
    for name in (manifest.image_tower, manifest.text_tower, manifest.tokenizer):
        resolve_inside(root, name)
    return manifest, root


def resolve_inside(root: Path, relative: str) -> Path:
    """Resolve a manifest path, refusing any that leaves the bundle directory or does not exist."""
    path = (root / relative).resolve()
    if root != path and root not in path.parents:
        raise ClippingEdgeError(f"manifest path {relative!r} points outside the bundle {root}: the manifest is corrupt or hostile")
    if not path.exists():
        raise ClippingEdgeError(f"bundle file {path} is missing: copy the whole bundle directory, or re-export it")
    return path
