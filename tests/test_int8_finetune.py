"""Quantization-aware int8 fine-tuning of a CNN image tower, and the pixel-reading stem its exports use."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from clipping_edge import ClippingEdgeError
from clipping_edge.training.config import Int8FinetuneConfig, TrainConfig


@pytest.fixture(scope="module")
def tiny_cnn_checkpoint(small_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from clipping_edge.training.trainer import train

    out = tmp_path_factory.mktemp("cnn")
    return train(TrainConfig(data=str(small_data), out=str(out), student="test-tiny-pretrained", method="clip", epochs=1,
                             batch_size=64, lr=1e-3, warmup_steps=2, workers=0, limit=256, lock_image=True))


def test_pixel_stem_computes_the_tower_and_its_input_is_the_pixels(tiny_cnn_checkpoint: Path):
    from clipping_edge.training.checkpoint import load_student
    from clipping_edge.training.models import PixelStem

    visual = load_student(tiny_cnn_checkpoint)[0].visual
    fused = visual.fused()
    assert isinstance(fused.trunk._conv_stem, PixelStem) and fused.reads_pixels and not visual.reads_pixels
    seen = []
    fused.trunk._conv_stem.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    pixels = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(fused(pixels), visual(pixels), atol=1e-5, rtol=0)
    assert torch.equal(seen[0], pixels)  # an int8 runtime's grid for this input is the pixels' own 256 levels


def test_int8_finetune_puts_the_folded_weights_on_the_int8_grid(tiny_cnn_checkpoint: Path, small_data: Path,
                                                               tmp_path: Path):
    from clipping_edge.training.checkpoint import load_student
    from clipping_edge.training.int8_finetune import finetune_for_int8, quantized_layers

    out = finetune_for_int8(Int8FinetuneConfig(checkpoint=str(tiny_cnn_checkpoint), out=str(tmp_path / "int8"),
                                               data=str(small_data), images=96, epochs=1))
    source, _, _ = load_student(tiny_cnn_checkpoint)
    tuned, _, meta = load_student(out)
    layers = quantized_layers(tuned.visual)
    assert sum(bn is not None for _, bn in layers) >= 40  # every EfficientNet convolution has its batch norm
    for layer, bn in layers:
        folded = layer.weight.detach()
        if bn is not None:
            folded = folded * (bn.weight / torch.sqrt(bn.running_var + bn.eps)).view(-1, 1, 1, 1)
        # What a runtime does: fold, scale = max|w| / 127 per output channel, round. Here it loses nothing.
        scale = folded.abs().flatten(1).amax(1).clamp_min(1e-12).view(-1, *[1] * (folded.dim() - 1)) / 127
        assert (folded / scale - (folded / scale).round()).abs().max() < 2e-3, "a weight is off the int8 grid"
    moved = [n for n, p in source.visual.named_parameters() if not torch.equal(p, dict(tuned.visual.named_parameters())[n])]
    assert moved, "nothing was fine-tuned"
    assert all(torch.equal(v, tuned.text.state_dict()[k]) for k, v in source.text.state_dict().items())
    history = meta["int8_finetune"]["history"]
    assert [row["epoch"] for row in history] == [0, 1] and all(0 < row["int8_vs_float_min"] <= 1.0001 for row in history)
    assert json.loads((out / "config.json").read_text())["student"]["vision"]["kind"] == "efficientnet-lite"


def test_int8_finetune_refuses_bad_bits_and_overwriting_its_source(tiny_cnn_checkpoint: Path, tmp_path: Path):
    from clipping_edge.training.int8_finetune import finetune_for_int8

    with pytest.raises(ClippingEdgeError, match="--weight-bits 4 is not supported"):
        finetune_for_int8(Int8FinetuneConfig(checkpoint=str(tiny_cnn_checkpoint), out=str(tmp_path / "x"), weight_bits=4))
    assert not (tmp_path / "x").exists()
    before = (tiny_cnn_checkpoint / "model.safetensors").read_bytes()
    with pytest.raises(ClippingEdgeError, match="is the checkpoint being fine-tuned"):
        finetune_for_int8(Int8FinetuneConfig(checkpoint=str(tiny_cnn_checkpoint), out=str(tiny_cnn_checkpoint)))
    assert (tiny_cnn_checkpoint / "model.safetensors").read_bytes() == before
