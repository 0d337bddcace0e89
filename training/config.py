"""Student architectures as small JSON files (training/model_configs/*.json) mapped onto dataclasses."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from clipping_edge.errors import ClippingEdgeError

CONFIG_DIR = Path(__file__).parent / "model_configs"

# CLIP's image statistics; recorded with the weights and applied inside the image graph.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class VisionConfig:
    image_size: int = 64
    patch_size: int = 8  # ViT patch side; image_size must be a multiple
    # "patch": one strided conv (plain ViT). "conv": stride-2 3x3 convs down to the patch grid, which
    # optimises much faster on small data (Xiao et al. 2021, "Early convolutions help transformers see better").
    stem: str = "patch"
    width: int = 192
    depth: int = 4
    heads: int = 3
    mlp_ratio: float = 4.0
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD


@dataclass
class TextConfig:
    context_length: int = 32  # tokens including start and end
    width: int = 128
    depth: int = 3
    heads: int = 4
    mlp_ratio: float = 4.0
    vocab_size: int = 2048  # upper bound for the BPE tokenizer trained on the captions
    # Filled from the tokenizer when the student is built: the pooled position is where this id sits.
    eot_id: int = -1


@dataclass
class StudentConfig:
    name: str
    embed_dim: int = 128
    vision: VisionConfig = field(default_factory=VisionConfig)
    text: TextConfig = field(default_factory=TextConfig)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "StudentConfig":
        data = dict(data)
        vision = VisionConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.pop("vision", {}).items()})
        text = TextConfig(**data.pop("text", {}))
        return cls(vision=vision, text=text, **data)


def list_students() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


def student_config(name_or_path: str) -> StudentConfig:
    """A registered student name (see list_students) or a path to a JSON config."""
    path = Path(name_or_path)
    if not path.is_file():
        path = CONFIG_DIR / f"{name_or_path}.json"
    if not path.is_file():
        import difflib

        close = difflib.get_close_matches(name_or_path, list_students(), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ClippingEdgeError(f"unknown student {name_or_path!r}: {hint}choose one of {', '.join(list_students())} or a JSON path")
    data = json.loads(path.read_text())
    data.setdefault("name", path.stem)
    return StudentConfig.from_json(data)


METHODS = ("clip", "clip-ping")


@dataclass
class TrainConfig:
    """Every training switch; the CLI makes one --flag per field."""

    data: str = "synthetic"  # dataset root, split folder, or "synthetic"
    out: str = "runs/train"
    student: str = "vit-nano"
    method: str = "clip-ping"
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup_steps: int = 100
    grad_clip: float = 1.0
    # CLIP-PING (DESIGN.md): loss weights, NCE temperature, support-set size, teachers
    lambda_nn: float = 1.0
    lambda_xnn: float = 1.0
    nce_temperature: float = 0.1
    support_size: int = 65536
    image_teacher: str = "efficientnet-lite0"
    text_teacher: str = "minilm"
    teacher_image_size: int | None = None  # None: the teacher's own (224 for EfficientNet-Lite0)
    seed: int = 0
    device: str = "auto"
    amp: bool = True  # bf16 (or fp16 with loss scaling) autocast on CUDA; ignored on CPU
    workers: int = 1
    limit: int | None = None  # use only the first N training pairs (quick runs, tests)
    eval_every: int = 0  # evaluate on the test split every N epochs (0: only at the end)
    resume: bool = False
