"""Checkpoints: a directory with model.safetensors + config.json + tokenizer.json, written atomically.

`trainer_state.pt` beside them (optimizer, schedule, loss heads, RNG, epoch) is what `--resume` needs;
export and evaluation read only the first three.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from clipping_edge.atomic import atomic_directory
from clipping_edge.errors import ClippingEdgeError
from clipping_edge.tokenizer import TextTokenizer

from .config import StudentConfig
from .models import Student

WEIGHTS, CONFIG, TOKENIZER, TRAINER_STATE = "model.safetensors", "config.json", "tokenizer.json", "trainer_state.pt"


def save_checkpoint(path: Path, model: Student, tokenizer_file: Path, meta: dict[str, Any],
                    trainer_state: dict[str, Any] | None = None) -> Path:
    with atomic_directory(path) as tmp:
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS))
        (tmp / CONFIG).write_text(json.dumps({"student": model.config.to_json(), **meta}, indent=2))
        shutil.copyfile(tokenizer_file, tmp / TOKENIZER)
        if trainer_state is not None:
            torch.save(trainer_state, tmp / TRAINER_STATE)
    return path


def read_config(path: Path) -> dict[str, Any]:
    path = Path(path)
    for name in (WEIGHTS, CONFIG, TOKENIZER):
        if not (path / name).is_file():
            raise ClippingEdgeError(f"{path} is not a checkpoint (no {name}): pass the directory written by `clipping-edge train`")
    return json.loads((path / CONFIG).read_text())


def load_student(path: str | Path) -> tuple[Student, TextTokenizer, dict[str, Any]]:
    """Load a checkpoint for evaluation or export (eval mode, CPU)."""
    path = Path(path)
    meta = read_config(path)
    cfg = StudentConfig.from_json(meta["student"])
    model = Student(cfg)
    model.load_state_dict(load_file(str(path / WEIGHTS)))
    return model.eval(), TextTokenizer(path / TOKENIZER, cfg.text.context_length), meta


def fingerprint(path: str | Path) -> str:
    """Identifies the trained weights; bundles and prototype indexes carry it."""
    digest = hashlib.sha256()
    with open(Path(path) / WEIGHTS, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]
