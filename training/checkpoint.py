"""Checkpoints: a directory with model.safetensors + config.json + tokenizer.json, written atomically.

`trainer_state.safetensors` + `trainer_state.json` beside them (optimizer, loss heads, RNG, epoch) is
what `--resume` needs; export and evaluation read only the first three. Nothing is pickled: tensors go
to safetensors, everything else to JSON, so a crafted checkpoint cannot run code.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from clipping_edge.atomic import atomic_directory, recover
from clipping_edge.errors import ClippingEdgeError
from clipping_edge.tokenizer import TextTokenizer

from .config import StudentConfig
from .models import Student

WEIGHTS, CONFIG, TOKENIZER = "model.safetensors", "config.json", "tokenizer.json"
TRAINER_STATE, TRAINER_TENSORS = "trainer_state.json", "trainer_state.safetensors"
_TENSOR = "__tensor__"


def save_checkpoint(path: Path, model: Student, tokenizer_file: Path, meta: dict[str, Any],
                    trainer_state: dict[str, Any] | None = None, force: bool = False) -> Path:
    with atomic_directory(path, "checkpoint", force=force) as tmp:
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS))
        (tmp / CONFIG).write_text(json.dumps({"student": model.config.to_json(), **meta}, indent=2))
        shutil.copyfile(tokenizer_file, tmp / TOKENIZER)
        if trainer_state is not None:
            tensors: dict[str, torch.Tensor] = {}
            skeleton = _split_tensors(trainer_state, "", tensors)
            save_file(tensors, str(tmp / TRAINER_TENSORS))
            (tmp / TRAINER_STATE).write_text(json.dumps(skeleton))
    return path


def _split_tensors(obj: Any, key: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Nested dicts/lists with tensors -> the same structure with each tensor replaced by a reference
    into `tensors`. Dict keys become strings (JSON); `_join_tensors` restores integer keys."""
    if isinstance(obj, torch.Tensor):
        tensors[key] = obj.detach().cpu().contiguous()
        return {_TENSOR: key}
    if isinstance(obj, dict):
        return {"__keys__": [[type(k).__name__, str(k)] for k in obj],
                "values": [_split_tensors(v, f"{key}/{k}", tensors) for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return [_split_tensors(v, f"{key}/{i}", tensors) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"trainer state holds a {type(obj).__name__}, which is neither a tensor nor JSON")


def _join_tensors(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict) and _TENSOR in obj:
        return tensors[obj[_TENSOR]]
    if isinstance(obj, dict):
        keys = [int(k) if kind == "int" else k for kind, k in obj["__keys__"]]
        return {k: _join_tensors(v, tensors) for k, v in zip(keys, obj["values"])}
    if isinstance(obj, list):
        return [_join_tensors(v, tensors) for v in obj]
    return obj


def load_trainer_state(path: Path, device: torch.device) -> dict[str, Any]:
    """The trainer state saved beside a checkpoint's weights, read without unpickling anything."""
    try:
        skeleton = json.loads((path / TRAINER_STATE).read_text(encoding="utf-8"))
        return _join_tensors(skeleton, load_file(str(path / TRAINER_TENSORS), device=str(device)))
    except FileNotFoundError as exc:  # safetensors' own leaves exc.filename empty
        missing = Path(exc.filename).name if exc.filename else TRAINER_TENSORS
        raise ClippingEdgeError(f"--resume: {path} has no {missing}: drop --resume to start anew") from None
    except Exception as exc:  # JSON, structure and safetensors' own errors (truncated, or a header that lies)
        raise ClippingEdgeError(f"--resume: the trainer state in {path} is damaged ({type(exc).__name__}: "
                                f"{str(exc)[:200]}): resume from a copy, or drop --resume to start anew") from None


def read_config(path: Path) -> dict[str, Any]:
    path = recover(Path(path))
    for name in (WEIGHTS, CONFIG, TOKENIZER):
        if not (path / name).is_file():
            raise ClippingEdgeError(f"{path} is not a checkpoint (no {name}): pass the directory written by `clipping-edge train`")
    try:
        meta = json.loads((path / CONFIG).read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ClippingEdgeError(f"{path / CONFIG} is not valid JSON ({exc}): the checkpoint is damaged") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("student"), dict):
        raise ClippingEdgeError(f"{path / CONFIG} has no student config: pass a checkpoint written by `clipping-edge train`")
    return meta


def check_finite(weights: dict[str, torch.Tensor], where: Path) -> None:
    """Refuse NaN or inf weights: they would export, evaluate and classify as if nothing were wrong."""
    bad = [name for name, t in weights.items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        raise ClippingEdgeError(f"{where} has non-finite weights (NaN or inf in {len(bad)} tensor(s), e.g. {bad[0]}): "
                                "use an earlier checkpoint, or retrain with a lower --lr")


def load_student(path: str | Path) -> tuple[Student, TextTokenizer, dict[str, Any]]:
    """Load a checkpoint for evaluation or export (eval mode, CPU)."""
    path = Path(path)
    meta = read_config(path)
    try:
        cfg = StudentConfig.from_json(meta["student"])
        model = Student(cfg)
    except (TypeError, ValueError, KeyError) as exc:
        raise ClippingEdgeError(f"{path / CONFIG} does not describe a student ({exc}): the checkpoint is damaged") from None
    try:
        weights = load_file(str(path / WEIGHTS))
    except Exception as exc:  # safetensors raises its own error types for empty or truncated files
        raise ClippingEdgeError(f"{path / WEIGHTS} is not a readable safetensors file ({str(exc)[:200]}): "
                                "the checkpoint is damaged or truncated") from None
    check_finite(weights, path / WEIGHTS)
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        raise ClippingEdgeError(f"{path / WEIGHTS} does not match its config.json ({str(exc).splitlines()[0][:200]}): "
                                "the checkpoint is damaged") from None
    return model.eval(), TextTokenizer(path / TOKENIZER, cfg.text.context_length), meta


def fingerprint(path: str | Path) -> str:
    """Identifies the trained weights; bundles and prototype indexes carry it."""
    digest = hashlib.sha256()
    with open(Path(path) / WEIGHTS, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]
