"""Locked towers (LiT, Zhai et al. 2022; open_clip's --lock-image / --lock-text) and their feature cache.

A locked tower keeps its (pretrained) weights: everything but its projection is frozen and kept in
eval mode (batch-norm statistics too), except the last N blocks when some are unlocked. A fully
locked tower computes the same features for a pair every epoch, so they are computed once, stored on
disk like the feature banks (the bank machinery does it, with the tower as the "teacher"), and a
training step only runs the projection on them: no image decoding, no trunk forward or backward.
The cached features are those of the evaluation view (resize + centre crop; the caption as written).
"""

from __future__ import annotations

import hashlib
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from clipping_edge.errors import ClippingEdgeError
from clipping_edge.preprocess import Preprocess, as_preprocess

from .teachers import ImageTeacher, TextTeacher


def unlockable_blocks(tower: nn.Module) -> list[nn.Module]:
    """The tower's blocks from input to output, for unlocking the last N (the projection is always trained)."""
    if hasattr(tower, "unlockable"):  # an imported CLIP tower
        return tower.unlockable()
    if hasattr(tower, "trunk") and hasattr(tower.trunk, "_blocks"):  # EfficientNet-Lite
        return [*tower.trunk._blocks, nn.ModuleList([tower.trunk._conv_head, tower.trunk._bn1])]
    if hasattr(tower, "encoder") and hasattr(getattr(tower.encoder, "encoder", None), "layer"):  # MiniLM / BERT
        return list(tower.encoder.encoder.layer)
    if hasattr(tower, "blocks"):  # our ViT and causal text transformer
        return [*tower.blocks, tower.norm]
    raise ClippingEdgeError(f"{type(tower).__name__} has no blocks to unlock: lock it whole (unlocked blocks 0)")


def fully_locked(train: Mapping[str, Any]) -> tuple[bool, bool]:
    """(image, text): which towers a run's settings (a TrainConfig's fields) lock whole and cache."""
    cached = train.get("cache_locked", True)
    return (bool(cached and train.get("lock_image") and not train.get("unlocked_image_blocks")),
            bool(cached and train.get("lock_text") and not train.get("unlocked_text_blocks")))


def lock_tower(tower: nn.Module, unlocked: int) -> list[nn.Module]:
    """Freeze all of `tower` but its projection and its last `unlocked` blocks. Returns the frozen
    modules, which training keeps in eval mode."""
    blocks = unlockable_blocks(tower) if unlocked else []
    if unlocked > len(blocks):
        raise ClippingEdgeError(f"cannot unlock {unlocked} blocks of a tower with {len(blocks)}: lower the number")
    trainable = [tower.proj, *blocks[len(blocks) - unlocked:]]
    tower.requires_grad_(False)
    for module in trainable:
        module.requires_grad_(True)
    keep = {id(m) for module in trainable for m in module.modules()}
    return [m for m in tower.modules() if id(m) not in keep and not any(True for _ in m.children())]


def weights_identity(tower: nn.Module) -> str:
    """Names a tower's weights before its projection, and how it reads features from them (e.g. a head
    temperature), for the cache key: the features change exactly when these do."""
    digest = hashlib.sha256()
    settings = getattr(tower, "feature_settings", ())
    if settings:  # none for plain pooled features, so keys of caches built before settings existed still hold
        digest.update(repr(settings).encode())
    for name, tensor in sorted(tower.state_dict().items()):
        if name.startswith("proj."):
            continue
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:20]


def image_tower_as_teacher(tower: nn.Module, image_size: int | Preprocess) -> ImageTeacher:
    """The locked image tower's pooled features (before its projection) in the bank builder's terms."""
    spec = as_preprocess(image_size)
    with torch.no_grad():
        dim = tower.features(torch.zeros(1, 3, spec.size, spec.size)).shape[-1]
    # Cache keys of the default preprocessing are as they were before it could differ.
    how = "" if spec == Preprocess(spec.size) else f"|{spec.resize}|{spec.interpolation}"
    # The banks feed the teacher pixels through its own eval transform; the student's mean/std is in `features`.
    return ImageTeacher("locked-image-tower", dim, spec.size, tower.features,
                        identity=f"locked-image|{weights_identity(tower)}|px{spec.size}{how}", module=tower, preprocess=spec)


def text_tower_as_teacher(tower: nn.Module, tokenize) -> TextTeacher:
    def forward(texts: Sequence[str]) -> torch.Tensor:
        ids = torch.from_numpy(tokenize(list(texts), warn=False)).to(next(tower.parameters()).device)
        return tower.features(ids)

    dim = tower.proj.in_features
    return TextTeacher("locked-text-tower", dim, forward, identity=f"locked-text|{weights_identity(tower)}", module=tower)


def cached_text_features(teacher: TextTeacher, texts: list[str]) -> torch.Tensor:
    """A locked text tower's normalised features of `texts` (not training pairs: e.g. anchor captions),
    computed once and kept in the feature-bank cache under the tower's identity and the texts."""
    import io

    import numpy as np

    from clipping_edge.atomic import write_bytes_atomic

    from .data.synthetic_cache import cache_dir

    key = hashlib.sha256("\n".join([teacher.identity, *texts]).encode()).hexdigest()[:20]
    path = cache_dir() / "banks" / f"texts-{key}.npy"
    if not path.is_file():
        features = torch.cat([teacher.encode(texts[i:i + 256]).cpu() for i in range(0, len(texts), 256)])
        buffer = io.BytesIO()
        np.save(buffer, features.numpy().astype(np.float16))
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(path, buffer.getvalue())
    return torch.from_numpy(np.load(path).astype(np.float32))


def no_text_teacher() -> TextTeacher:
    """A stand-in when only the image tower is cached: one constant column costs nothing to store."""
    return TextTeacher("none", 1, lambda texts: torch.ones(len(texts), 1), identity="none")


def no_image_teacher(image_size: int) -> ImageTeacher:
    return ImageTeacher("none", 1, image_size, lambda pixels: torch.ones(len(pixels), 1), identity=f"none|px{image_size}",
                        reads_pixels=False)


def project_cached(tower: nn.Module, features: torch.Tensor) -> torch.Tensor:
    """A locked tower's embedding from its cached (normalised) features: the projection is linear and
    the result is normalised again, so the features' scale does not matter."""
    return F.normalize(tower.proj(features.to(tower.proj.weight.dtype)), dim=-1)
