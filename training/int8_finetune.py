"""Quantization-aware fine-tuning of an image tower for int8 runtimes (QAT, Jacob et al. 2018).

Post-training int8 of the EfficientNet-Lite student fails every runtime's gate (README: image cosine
0.68-0.93): rounding its batch-norm-folded weights per output channel and its activations per tensor
moves the embedding too far. This fine-tunes a copy of the image tower to reproduce the float
tower's embeddings *through* that rounding (fake quantization, straight-through gradients), then
stores weights that lie on the int8 grid: a runtime that folds batch norm and quantizes per output
channel with scale max|w| / 127 (TFLite, ONNX Runtime, OpenVINO without its 7-bit overflow fix)
gets exactly these weights back, and what still differs from the float checkpoint is activation
rounding, which the fine-tuning taught the tower to tolerate. The text tower is left as it is.

The result is a new checkpoint (its float embeddings move slightly: the held-out figures printed
each epoch and kept in its config say how far); export it with an int8 precision as usual.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from clipping_edge.errors import ClippingEdgeError
from clipping_edge.shell import command_name
from clipping_edge.preprocess import preprocess_batch

from .checkpoint import TOKENIZER, fingerprint, load_student, save_checkpoint
from .config import Int8FinetuneConfig
from .data.pairs import read_pairs, resolve_split


class FoldedWeightGrid(nn.Module):
    """Parametrization of a conv/linear weight: the weight the runtime will hold (batch norm folded in,
    when one follows) rounded per output channel to symmetric `bits`-bit levels, in unfolded units."""

    def __init__(self, layer: nn.Module, bn: nn.BatchNorm2d | None, bits: int):
        super().__init__()
        self.levels = 2 ** (bits - 1) - 1
        # The batch norm is frozen (eval mode, no gradients) throughout, so its fold is a constant.
        fold = torch.ones(layer.weight.shape[0]) if bn is None else (bn.weight / torch.sqrt(bn.running_var + bn.eps))
        self.register_buffer("fold", fold.detach().view(-1, *[1] * (layer.weight.dim() - 1)).clone())

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        folded = weight * self.fold
        scale = (folded.detach().abs().flatten(1).amax(1) / self.levels).clamp_min(1e-12)
        zero = torch.zeros_like(scale, dtype=torch.int32)
        return torch.fake_quantize_per_channel_affine(folded, scale, zero, 0, -self.levels, self.levels) / self.fold


class ActivationGrid:
    """Forward pre-hook: observe a layer input's range, then round it to 256 levels over that range (what a
    calibrated int8 runtime does per tensor)."""

    def __init__(self, layer: nn.Module) -> None:
        self.low, self.high, self.rounding = 0.0, 0.0, False
        self.handle = layer.register_forward_pre_hook(self)

    def __call__(self, module: nn.Module, args: tuple) -> tuple | None:
        x = args[0]
        if not self.rounding:
            self.low, self.high = min(self.low, x.min().item()), max(self.high, x.max().item())
            return None
        scale = max(self.high - self.low, 1e-8) / 255
        return (torch.fake_quantize_per_tensor_affine(x, scale, round(-self.low / scale), 0, 255), *args[1:])


def quantized_layers(tower: nn.Module) -> list[tuple[nn.Module, nn.BatchNorm2d | None]]:
    """Every convolution and linear layer with the batch norm that directly follows it (the runtimes fold it)."""
    weighted = (nn.Conv2d, nn.Linear)
    inside = {id(c) for m in tower.modules() if isinstance(m, weighted) for c in m.modules() if c is not m}  # "same" padding
    leaves = [m for m in tower.modules() if id(m) not in inside and (isinstance(m, weighted) or not any(True for _ in m.children()))]
    layers = []
    for i, module in enumerate(leaves):
        if isinstance(module, weighted):
            follower = leaves[i + 1] if i + 1 < len(leaves) else None
            bn = follower if isinstance(module, nn.Conv2d) and isinstance(follower, nn.BatchNorm2d) \
                and follower.num_features == module.out_channels else None
            layers.append((module, bn))
    return layers


def simulate_int8(tower: nn.Module, bits: int, calibration: torch.Tensor) -> list[ActivationGrid]:
    """Attach the weight and activation rounding to `tower` in place, activation ranges from `calibration`.
    The first layer's input stays exact when the exported tower reads [0, 1] pixels there (its grid is the
    pixels' own 256 levels: see EfficientNetLiteTower.fused)."""
    layers = quantized_layers(tower)
    reads_pixels = getattr(tower.fused(), "reads_pixels", False)
    grids = []
    for i, (layer, bn) in enumerate(layers):
        parametrize.register_parametrization(layer, "weight", FoldedWeightGrid(layer, bn, bits))
        if not (i == 0 and reads_pixels):
            grids.append(ActivationGrid(layer))
    with torch.no_grad():
        tower(calibration)
    for grid in grids:
        grid.rounding = True
    return grids


def stop_simulating(tower: nn.Module, grids: list[ActivationGrid]) -> None:
    """Undo `simulate_int8`, keeping the rounded weights as the tower's weights."""
    for grid in grids:
        grid.handle.remove()
    for layer in [m for m in tower.modules() if parametrize.is_parametrized(m, "weight")]:
        parametrize.remove_parametrizations(layer, "weight", leave_parametrized=True)


def _embed(tower: nn.Module, images: np.ndarray, batch: int = 64) -> torch.Tensor:
    return torch.cat([tower(torch.from_numpy(images[i:i + batch]).float() / 255) for i in range(0, len(images), batch)])


def _images(data: str, split: str, count: int, size: int, seed: int) -> np.ndarray:
    pairs = read_pairs(resolve_split(data, split)).pairs
    chosen = sorted(random.Random(seed).sample(range(len(pairs)), min(count, len(pairs))))
    return np.concatenate([(preprocess_batch([pairs[i].source() for i in chosen[j:j + 64]], size) * 255).round()
                           .astype(np.uint8) for j in range(0, len(chosen), 64)])


def _agreement(simulated: torch.Tensor, snapped: torch.Tensor, reference: torch.Tensor) -> dict[str, float]:
    # Embeddings are normalised; rows where one is all zero (a tiny input pooled to nothing) have no direction.
    rows = (simulated.norm(dim=-1) > 0.5) & (snapped.norm(dim=-1) > 0.5) & (reference.norm(dim=-1) > 0.5)
    simulated, snapped, reference = simulated[rows], snapped[rows], reference[rows]
    int8_vs_float, float_vs_source = (simulated * snapped).sum(-1), (snapped * reference).sum(-1)
    return {"int8_vs_float_min": float(int8_vs_float.min()), "int8_vs_float_mean": float(int8_vs_float.mean()),
            "float_vs_source_min": float(float_vs_source.min())}


def finetune_for_int8(cfg: Int8FinetuneConfig) -> Path:
    if cfg.weight_bits not in (7, 8):
        raise ClippingEdgeError(f"--weight-bits {cfg.weight_bits} is not supported: use 8, or 7 for OpenVINO's overflow fix")
    if Path(cfg.out).resolve() == Path(cfg.checkpoint).resolve():
        raise ClippingEdgeError(f"--out {cfg.out} is the checkpoint being fine-tuned: write the int8-ready one beside it")
    torch.manual_seed(cfg.seed)
    student, _, meta = load_student(cfg.checkpoint)
    data = cfg.data or meta.get("train", {}).get("data")
    if not data:
        raise ClippingEdgeError(f"{cfg.checkpoint} does not name its training data: pass --data")
    size = student.config.vision.image_size
    train = _images(data, "train", cfg.images, size, cfg.seed)
    try:
        held_out = _images(data, "val", 256, size, cfg.seed)
    except ClippingEdgeError:  # a dataset without a validation split: judge on its test split
        held_out = _images(data, "test", 256, size, cfg.seed)
    tower = student.visual.eval()
    with torch.no_grad():  # the float tower's embeddings, before any rounding is attached
        targets, held_out_targets = _embed(tower, train), _embed(tower, held_out)
    grids = simulate_int8(tower, cfg.weight_bits, torch.from_numpy(train[:128]).float() / 255)

    def measure() -> dict[str, float]:
        with torch.no_grad():
            simulated = _embed(tower, held_out)
            for grid in grids:
                grid.rounding = False
            snapped = _embed(tower, held_out)
            for grid in grids:
                grid.rounding = True
        return _agreement(simulated, snapped, held_out_targets)

    weights = [p for name, p in tower.named_parameters() if name.endswith("original")]
    tower.requires_grad_(False)
    for p in weights:
        p.requires_grad_(True)
    optimizer = torch.optim.Adam(weights, lr=cfg.lr)
    history = [{"epoch": 0, **measure()}]
    print(_line(history[-1]))
    order = np.random.default_rng(cfg.seed)
    for epoch in range(1, cfg.epochs + 1):
        start, losses = time.time(), []
        for batch in np.array_split(order.permutation(len(train)), max(1, len(train) // cfg.batch_size)):
            batch = np.sort(batch)
            loss = (1 - (tower(torch.from_numpy(train[batch]).float() / 255) * targets[batch]).sum(-1)).mean()
            if not math.isfinite(loss.item()):
                raise ClippingEdgeError(f"int8 fine-tuning diverged (loss {loss.item()}) in epoch {epoch}: lower --lr")
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        history.append({"epoch": epoch, "loss": float(np.mean(losses)), "seconds": round(time.time() - start, 1), **measure()})
        print(_line(history[-1]))
    stop_simulating(tower, grids)
    record = {**asdict(cfg), "data": data, "source": fingerprint(cfg.checkpoint), "history": history}
    meta = {k: v for k, v in meta.items() if k != "student"}
    out = save_checkpoint(Path(cfg.out), student, Path(cfg.checkpoint) / TOKENIZER, {**meta, "int8_finetune": record})
    print(f"wrote {out} (image weights on the {cfg.weight_bits}-bit grid); next: {command_name()} export --checkpoint {out} "
          "--target tflite --quantize int8-static --out BUNDLE")
    return out


def _line(row: dict) -> str:
    loss = f"loss {row['loss']:.5f} ({row['seconds']:.0f} s), " if "loss" in row else "before: "
    return (f"epoch {row['epoch']}: {loss}held-out simulated int8 vs float cosine min {row['int8_vs_float_min']:.4f} "
            f"mean {row['int8_vs_float_mean']:.4f}; float vs the source checkpoint min {row['float_vs_source_min']:.4f}")

