"""The towers of an imported CLIP-family model (OpenCLIP, MobileCLIP, Hugging Face CLIP converted to open_clip's
layout), in the student's shape: an image tower and a text tower, each `features` -> `proj` -> L2-normalised.

open_clip's own modules hold the weights (their state-dict keys are open_clip's, under `net.`), so a checkpoint
of open_clip's loads as it is; what changes is only what export needs:
- nn.MultiheadAttention becomes `MatmulAttention` (same parameters, plain matmuls), and timm attention drops its
  fused kernel: converters take matmul + softmax everywhere, a fused attention op not;
- the text tower pools at the end-of-text position with a one-hot product (DESIGN.md), not open_clip's argmax.
`proj` is a d x d linear that starts as the identity: the imported model's embeddings are unchanged, and a
locked tower (LiT) or a student distilled from it trains that projection as any student's.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .compat import import_open_clip
from .config import TextConfig, VisionConfig


class MatmulAttention(nn.Module):
    """nn.MultiheadAttention's parameters and call (q, k, v, need_weights, attn_mask), computed with matmuls."""

    def __init__(self, mha: nn.MultiheadAttention):
        super().__init__()
        if not mha._qkv_same_embed_dim or mha.bias_k is not None:
            raise ValueError("only attention with one packed input projection is supported")
        self.num_heads, self.batch_first = mha.num_heads, mha.batch_first
        self.in_proj_weight, self.in_proj_bias, self.out_proj = mha.in_proj_weight, mha.in_proj_bias, mha.out_proj

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, need_weights: bool = False,
                attn_mask: torch.Tensor | None = None, key_padding_mask: torch.Tensor | None = None,
                **_: Any) -> tuple[torch.Tensor, None]:
        if key_padding_mask is not None:
            raise ValueError("key_padding_mask is not supported: pass an additive attn_mask")
        if not self.batch_first:
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        b, n, c = query.shape
        heads, head = self.num_heads, c // self.num_heads
        wq, wk, wv = self.in_proj_weight.chunk(3)
        bq, bk, bv = self.in_proj_bias.chunk(3) if self.in_proj_bias is not None else (None, None, None)

        def split(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
            return F.linear(x, w, bias).reshape(x.shape[0], x.shape[1], heads, head).transpose(1, 2)

        q, k, v = split(query, wq, bq), split(key, wk, bk), split(value, wv, bv)
        scores = (q * head ** -0.5) @ k.transpose(-2, -1)
        if attn_mask is not None:
            mask = attn_mask.to(scores.dtype)
            scores = scores + (mask.reshape(b, heads, n, -1) if mask.dim() == 3 else mask)
        out = (scores.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, n, c)
        out = self.out_proj(out)
        return (out if self.batch_first else out.transpose(0, 1)), None


def exportable(module: nn.Module) -> nn.Module:
    """Swap every nn.MultiheadAttention for MatmulAttention and turn timm's fused attention off, in place."""
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.MultiheadAttention):
                setattr(parent, name, MatmulAttention(child))
        if hasattr(parent, "fused_attn"):
            parent.fused_attn = False
    return module


def identity_projection(dim: int) -> nn.Linear:
    proj = nn.Linear(dim, dim, bias=False)
    with torch.no_grad():
        proj.weight.copy_(torch.eye(dim))
    return proj


class TimmTrunk(nn.Module):
    """A timm model built with explicit arguments, in open_clip's TimmModel layout (`trunk.*`) with no projection."""

    def __init__(self, name: str, kwargs: dict[str, Any]):
        super().__init__()
        import timm

        self.trunk = timm.create_model(name, pretrained=False, num_classes=0, **kwargs)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.trunk(pixels)


class OpenClipImageTower(nn.Module):
    """open_clip's visual tower (a ViT, or a timm trunk such as MobileCLIP's FastViT-MCI or ConvNeXt)."""

    initialised = True  # Student leaves its weights alone: open_clip initialised them, or a checkpoint fills them

    def __init__(self, cfg: VisionConfig, embed_dim: int):
        super().__init__()
        import_open_clip()  # first: it declares what torchvision needs before open_clip imports it
        from open_clip.model import _build_vision_tower
        arch = dict(cfg.open_clip)
        quick_gelu = arch.pop("quick_gelu", False)
        self.register_buffer("mean", torch.tensor(cfg.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(cfg.std).view(1, 3, 1, 1), persistent=False)
        timm_kwargs = arch.pop("timm_model_kwargs", None)
        if timm_kwargs:  # a ViT of any size (Hugging Face SigLIP): timm builds it, open_clip's TimmModel could not
            self.net = exportable(TimmTrunk(arch["timm_model_name"], timm_kwargs))
        else:
            self.net = exportable(_build_vision_tower(embed_dim, arch, quick_gelu))
        trunk = getattr(self.net, "trunk", None)
        if getattr(trunk, "dynamic_img_size", False) and tuple(trunk.patch_embed.img_size) == (cfg.image_size,) * 2:
            # A timm ViT built for any input size resamples its position table on every call, and keeps doing so
            # while exporting (bicubic with antialias: no TFLite lowering). At its native size that is the identity.
            trunk.dynamic_img_size, trunk.patch_embed.flatten = False, True
        self.proj = identity_projection(embed_dim)

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) RGB in [0, 1] -> (B, d) the imported model's image embedding, before normalising."""
        return self.net((pixels - self.mean) / self.std)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.proj(self.features(pixels)), dim=-1)

    def fused(self) -> nn.Module:
        """MobileCLIP's re-parameterisable blocks (FastViT-MCI's MobileOne convolutions, RepMixer) folded into
        single convolutions for inference; a plain copy for towers without them."""
        from timm.utils.model import reparameterize_model

        return reparameterize_model(copy.deepcopy(self).eval())

    def unlockable(self) -> list[nn.Module]:
        """Blocks from input to output, for --unlocked-image-blocks."""
        if hasattr(self.net, "transformer"):
            return [*self.net.transformer.resblocks, nn.ModuleList([self.net.ln_post])]
        trunk = getattr(self.net, "trunk", None)
        for name in ("stages", "blocks"):
            if hasattr(trunk, name):
                return list(getattr(trunk, name))
        raise ValueError(f"{type(self.net).__name__} has no blocks to unlock")


class OpenClipTextTower(nn.Module):
    """open_clip's text transformer, pooled at the end-of-text token (or the first/last position, as configured)."""

    initialised = True

    def __init__(self, cfg: TextConfig, embed_dim: int):
        super().__init__()
        import_open_clip()  # first: it declares what torchvision needs before open_clip imports it
        from open_clip.model import _build_text_tower
        if cfg.eot_id < 0:
            raise ValueError("TextConfig.eot_id is unset: build the student with the tokenizer's end-of-text id")
        arch = dict(cfg.open_clip)
        quick_gelu = arch.pop("quick_gelu", False)
        if arch.get("hf_model_name"):
            raise ValueError("open_clip text towers from Hugging Face models are not supported")
        self.net = exportable(_build_text_tower(embed_dim, arch, quick_gelu))
        self.eot_id, self.pool = cfg.eot_id, self.net.pool_type
        self.proj = identity_projection(embed_dim)

    def features(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, L) token ids -> (B, d) the imported model's text embedding, before normalising."""
        ids = ids.long()
        x, mask = self.net._embeds(ids)
        x = self.net.ln_final(self.net.transformer(x, attn_mask=mask))
        if self.net.cls_emb is not None:
            pooled = x[:, -1]
        elif self.pool in ("argmax", "eos"):
            # argmax finds CLIP's end-of-text id, the largest in its vocabulary: the same position as a one-hot
            pooled = (x * (ids == self.eot_id).to(x.dtype).unsqueeze(-1)).sum(1)
        elif self.pool == "first":
            pooled = x[:, 0]
        else:
            pooled = x[:, -1]
        projection = self.net.text_projection
        if projection is None:
            return pooled
        return projection(pooled) if isinstance(projection, nn.Linear) else pooled @ projection

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.proj(self.features(ids)), dim=-1)

    def unlockable(self) -> list[nn.Module]:
        return [*self.net.transformer.resblocks, nn.ModuleList([self.net.ln_final])]
