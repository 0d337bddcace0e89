"""What a training run settles before its first step: the config's checks, the device and seeds, mixed precision,
the optimizer's groups and schedule, and the splits of the validation curve."""

from __future__ import annotations

import math
import random
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from clipping_edge.cli_args import out_of_range
from clipping_edge.errors import ClippingEdgeError

from .config import METHODS, MINIMUMS, TrainConfig
from .data.augment import RECIPES
from .data.pairs import SplitSource, resolve_split
from .locking import fully_locked
from .losses import MAX_LOGIT_SCALE
from .neighbours import XNN_MODES
from .tokenizer_packaged import PACKAGED_TOKENIZERS

NEIGHBOUR_QUERIES = ("teacher", "student")


def seed_everything(seed: int, deterministic: bool = False) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ClippingEdgeError("--device cuda was asked for but torch sees no CUDA GPU: use --device cpu")
    if name == "cuda":  # one GPU per process under torchrun
        return torch.device("cuda", local_rank)
    return torch.device(name)


def param_groups(modules: list[nn.Module], weight_decay: float) -> list[dict]:
    """AdamW groups: no decay on norms, biases, embeddings' positions, tokens and the logit scale."""
    decay, no_decay = [], []
    for module in modules:
        for name, p in module.named_parameters():
            if p.requires_grad:
                (no_decay if p.ndim < 2 or "pos_embed" in name or "cls_token" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def cosine_with_warmup(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


@dataclass
class Amp:
    """Autocast settings: bf16 on CUDA where supported, else fp16 with loss scaling; off on CPU."""

    enabled: bool
    dtype: torch.dtype

    @classmethod
    def for_device(cls, device: torch.device, wanted: bool) -> "Amp":
        enabled = wanted and device.type == "cuda"
        return cls(enabled, torch.bfloat16 if enabled and torch.cuda.is_bf16_supported() else torch.float16)


def has_bf16(device: torch.device) -> bool:
    """Native bfloat16 arithmetic (emulated bf16 on other CPUs is slower than fp32)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return bool(getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)())


def validate_config(cfg: TrainConfig) -> None:
    choices = {"method": METHODS, "recipe": RECIPES, "xnn": XNN_MODES, "neighbour_query": NEIGHBOUR_QUERIES,
               "mining": ("auto", "exact", "usearch"), "tokenizer": ("captions", *PACKAGED_TOKENIZERS)}
    for name, allowed in choices.items():
        if getattr(cfg, name) not in allowed:
            raise ClippingEdgeError(f"unknown --{name.replace('_', '-')} {getattr(cfg, name)!r}: choose one of {', '.join(allowed)}")
    for name, (minimum, strict) in MINIMUMS.items():
        value = getattr(cfg, name)
        problem = "" if value is None else out_of_range(value, minimum, strict)
        if problem:
            raise ClippingEdgeError(f"--{name.replace('_', '-')} {value} {problem}")
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", cfg.device):
        raise ClippingEdgeError(f"unknown --device {cfg.device!r}: use auto, cpu, cuda or cuda:N")
    if cfg.accum_steps < 1 or cfg.batch_size % cfg.accum_steps:
        raise ClippingEdgeError(f"--batch-size {cfg.batch_size} is not divisible into --accum-steps {cfg.accum_steps} "
                                "micro-batches: pick a divisor")
    if cfg.neighbours < 1:
        raise ClippingEdgeError("--neighbours must be at least 1")
    if (cfg.keep_image_blocks or cfg.keep_text_blocks) and not cfg.student_from:
        raise ClippingEdgeError("--keep-image-blocks / --keep-text-blocks choose blocks of an imported model: add "
                                "--student-from open_clip:... (or hf:..., or an imported checkpoint)")
    if cfg.logit_scale > MAX_LOGIT_SCALE:
        raise ClippingEdgeError(f"--logit-scale {cfg.logit_scale:g} is above the clamp of {MAX_LOGIT_SCALE:g}: pick a value "
                                f"in (0, {MAX_LOGIT_SCALE:g}], or 0 to learn it")


def uses_locked_cache(cfg: TrainConfig) -> bool:
    """Whether a step reads a fully locked tower's features from the disk cache instead of running it: only where
    it would compute exactly them, one plain view and no online teachers."""
    return any(fully_locked(asdict(cfg))) and cfg.method != "a-clip-ping" and cfg.recipe == "basic"


def curve_sources(cfg: TrainConfig) -> dict[str, SplitSource]:
    """The validation curve's splits: key prefix ("" for a lone set) -> each --eval-data set's val split."""
    roots = [d.strip() for d in (cfg.eval_data or cfg.data).split(",") if d.strip()]
    sources = {}
    for root in roots:
        try:
            source = resolve_split(root, "val")
        except ClippingEdgeError:  # no val split: the test split stands in
            source = resolve_split(root, "test")
        sources["" if len(roots) == 1 else f"{Path(root.split('+')[0]).name}/"] = source
    return sources
