"""The student: a ViT image tower and a causal text transformer, CLIP style, small enough for a phone.

Attention is written out with matmuls (no fused SDPA) and the causal mask is a buffer, so the same
module exports unchanged to ONNX, OpenVINO, Core ML and TFLite. Both towers return L2-normalised
embeddings; the image tower takes RGB in [0, 1] and applies mean/std itself.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import StudentConfig, TextConfig, VisionConfig


class Attention(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by {heads} heads")
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        attn = (q * (c // self.heads) ** -0.5) @ k.transpose(-2, -1)
        if mask is not None:
            attn = attn + mask
        x = attn.softmax(dim=-1) @ v
        return self.out(x.transpose(1, 2).reshape(b, n, c))


class Block(nn.Module):
    """Pre-norm transformer block."""

    def __init__(self, width: int, heads: int, mlp_ratio: float):
        super().__init__()
        hidden = int(width * mlp_ratio)
        self.norm1 = nn.LayerNorm(width)
        self.attn = Attention(width, heads)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), mask)
        return x + self.mlp(self.norm2(x))


def conv_stem(width: int, patch_size: int) -> nn.Sequential:
    """log2(patch) stride-2 3x3 conv + BN + ReLU stages, channels doubling up to width/2, then a 1x1 to width."""
    if patch_size & (patch_size - 1):
        raise ValueError(f"the conv stem needs a power-of-two patch size, got {patch_size}")
    layers: list[nn.Module] = []
    channels, stages = 3, patch_size.bit_length() - 1
    for stage in range(stages):
        out = max(16, width // 2 ** (stages - stage))
        layers += [nn.Conv2d(channels, out, 3, 2, 1, bias=False), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
        channels = out
    return nn.Sequential(*layers, nn.Conv2d(channels, width, 1))


class VisionTransformer(nn.Module):
    def __init__(self, cfg: VisionConfig, embed_dim: int):
        super().__init__()
        if cfg.image_size % cfg.patch_size:
            raise ValueError(f"image size {cfg.image_size} is not a multiple of patch size {cfg.patch_size}")
        n_patches = (cfg.image_size // cfg.patch_size) ** 2
        self.register_buffer("mean", torch.tensor(cfg.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(cfg.std).view(1, 3, 1, 1), persistent=False)
        if cfg.stem == "conv":
            self.patch_embed: nn.Module = conv_stem(cfg.width, cfg.patch_size)
        elif cfg.stem == "patch":
            self.patch_embed = nn.Conv2d(3, cfg.width, cfg.patch_size, cfg.patch_size)
        else:
            raise ValueError(f"unknown stem {cfg.stem!r}: use 'patch' or 'conv'")
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.width))
        self.pos_embed = nn.Parameter(torch.randn(1, n_patches + 1, cfg.width) * 0.02)
        self.blocks = nn.ModuleList(Block(cfg.width, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.width)
        self.proj = nn.Linear(cfg.width, embed_dim, bias=False)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) RGB in [0, 1] -> (B, embed_dim) L2-normalised."""
        x = self.patch_embed((pixels - self.mean) / self.std).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return F.normalize(self.proj(self.norm(x[:, 0])), dim=-1)


class TextTransformer(nn.Module):
    def __init__(self, cfg: TextConfig, embed_dim: int):
        super().__init__()
        if cfg.eot_id < 0:
            raise ValueError("TextConfig.eot_id is unset: build the student with the tokenizer's end-of-text id")
        self.eot_id = cfg.eot_id
        self.token_embed = nn.Embedding(cfg.vocab_size, cfg.width)
        self.pos_embed = nn.Parameter(torch.randn(1, cfg.context_length, cfg.width) * 0.01)
        mask = torch.full((cfg.context_length, cfg.context_length), float("-inf")).triu(1)
        self.register_buffer("causal_mask", mask, persistent=False)
        self.blocks = nn.ModuleList(Block(cfg.width, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.width)
        self.proj = nn.Linear(cfg.width, embed_dim, bias=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, L) int token ids -> (B, embed_dim) L2-normalised, pooled at the end-of-text token."""
        x = self.token_embed(ids.long()) + self.pos_embed
        for block in self.blocks:
            x = block(x, self.causal_mask)
        # Pool by multiplying with a one-hot of the EOT position: no argmax, no gather on ids, so it
        # survives fp16/int8 conversion and every converter. The tokenizer guarantees one EOT per row.
        at_eot = (ids == self.eot_id).to(x.dtype).unsqueeze(-1)
        return F.normalize(self.proj(self.norm((x * at_eot).sum(1))), dim=-1)


class Student(nn.Module):
    def __init__(self, cfg: StudentConfig):
        super().__init__()
        self.config = cfg
        self.visual = VisionTransformer(cfg.vision, cfg.embed_dim)
        self.text = TextTransformer(cfg.text, cfg.embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self.apply(_init_weights)

    def forward(self, pixels: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.visual(pixels), self.text(ids)


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, std=0.02)
