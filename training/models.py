"""The student: an image tower and a text tower, CLIP style, small enough for a phone.

Towers come from two small registries (IMAGE_TOWERS, TEXT_TOWERS) keyed by the config's `kind`:
our ViT or any timm architecture for images; CLIP's causal text transformer or a MobileBERT-style
encoder for text. Our own attention is written out with matmuls (no fused SDPA) and the causal mask
is a buffer, so the same module exports unchanged to ONNX, OpenVINO, Core ML and TFLite. Both towers
return L2-normalised embeddings; the image tower takes RGB in [0, 1] and applies mean/std itself.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .compat import declare_torchvision_ops, import_timm, quiet_transformers
from .clip_towers import OpenClipImageTower, OpenClipTextTower
from .config import StudentConfig, TextConfig, VisionConfig

declare_torchvision_ops()  # before anything imports transformers or timm


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


class ImageTowerBase(nn.Module):
    """Mean/std inside the graph; subclasses map normalised pixels to the embedding."""

    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.register_buffer("mean", torch.tensor(cfg.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(cfg.std).view(1, 3, 1, 1), persistent=False)

    def fused(self) -> nn.Module:
        """The tower to export: itself, or a re-parameterized copy with the same function."""
        return self


class VisionTransformer(ImageTowerBase):
    def __init__(self, cfg: VisionConfig, embed_dim: int):
        super().__init__(cfg)
        if cfg.image_size % cfg.patch_size:
            raise ValueError(f"image size {cfg.image_size} is not a multiple of patch size {cfg.patch_size}")
        n_patches = (cfg.image_size // cfg.patch_size) ** 2
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


class TimmImageTower(ImageTowerBase):
    """Any timm architecture (random init), globally pooled, projected to the embedding."""

    def __init__(self, cfg: VisionConfig, embed_dim: int):
        super().__init__(cfg)
        if not cfg.timm_model:
            raise ValueError("vision kind 'timm' needs timm_model, e.g. \"mobilenetv3_small_100\"")
        self.trunk = import_timm().create_model(cfg.timm_model, pretrained=False, num_classes=0)
        # The pooled width, which some heads (MobileNetV3's conv head) make differ from num_features.
        with torch.no_grad():
            width = self.trunk.eval()(torch.zeros(1, 3, cfg.image_size, cfg.image_size)).shape[-1]
        self.proj = nn.Linear(width, embed_dim, bias=False)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.proj(self.trunk((pixels - self.mean) / self.std)), dim=-1)

    def fused(self) -> nn.Module:
        """MobileOne / FastViT / RepViT train with parallel branches and fold them into single convs
        for inference; a no-op copy for architectures without branches."""
        import copy

        from timm.utils.model import reparameterize_model

        return reparameterize_model(copy.deepcopy(self).eval())


class EfficientNetLiteTower(ImageTowerBase):
    """The packaged ImageNet EfficientNet-Lite (made for int8 edge inference: ReLU6, no squeeze-excite),
    globally pooled and projected. With `pretrained` its trunk is the image teacher's network with the
    teacher's weights, so before training its pooled features are the teacher's. With a head temperature
    the projection reads the ImageNet head's class probabilities instead of the pooled features."""

    def __init__(self, cfg: VisionConfig, embed_dim: int):
        super().__init__(cfg)
        from .teachers import efficientnet_lite_network

        self.trunk = efficientnet_lite_network(cfg.variant, cfg.pretrained)
        self.head_temperature, self.head_top_k = cfg.head_temperature, cfg.head_top_k
        self.reads_pixels = False  # True in `fused`'s copy: the stem convolution normalises
        if self.head_temperature > 0:
            self.proj = nn.Linear(self.trunk._fc.out_features, embed_dim, bias=False)
        else:
            self.proj = nn.Linear(self.trunk._fc.in_features, embed_dim, bias=False)
            del self.trunk._fc  # the ImageNet head is not part of the tower

    @property
    def feature_settings(self) -> tuple:
        """What, besides the weights, decides `features` (part of the locked-feature cache key); () for pooled."""
        return ("head", self.head_temperature, self.head_top_k) if self.head_temperature > 0 else ()

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) RGB in [0, 1] -> (B, 1280) pooled trunk features, or (B, 1000) ImageNet class
        probabilities with a head temperature: what the projection reads."""
        normalised = pixels if self.reads_pixels else (pixels - self.mean) / self.std
        pooled = self.trunk.extract_features(normalised).mean((2, 3))
        if self.head_temperature <= 0:
            return pooled
        probabilities = (self.trunk._fc(pooled) / self.head_temperature).softmax(-1)
        if self.head_top_k:
            # The k-th largest value by k - 1 rounds of "drop the maximum", then a mask: no TopK or sort,
            # which LiteRT's interpreter cannot run (it converts to StableHLO's sort), and no scatter.
            rest = probabilities
            for _ in range(self.head_top_k - 1):
                rest = torch.where(rest >= rest.amax(-1, keepdim=True), torch.full_like(rest, -1.0), rest)
            kth = rest.amax(-1, keepdim=True)
            probabilities = probabilities * (probabilities >= kth).to(probabilities.dtype)
        return probabilities

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.proj(self.features(pixels)), dim=-1)

    def fused(self) -> nn.Module:
        """A copy whose stem convolution reads the [0, 1] pixels: mean/std folded into its weights and bias,
        its "same" padding filled with the mean (what zero padding of normalised pixels is). Int8 runtimes
        quantize a convolution's input on a grid spanning its range: [0, 1] maps exactly onto the 256 pixel
        levels, while the normalised [-1, 1] falls between grid points and cost this tower image cosine
        0.978 alone (simulated, stem input only). Needs one mean for all channels (EfficientNet-Lite's 0.5)."""
        if len(set(self.mean.flatten().tolist())) != 1 or any(self.trunk._conv_stem.padding):
            return self
        import copy

        fused = copy.deepcopy(self).eval()
        fused.trunk._conv_stem = PixelStem(fused.trunk._conv_stem, float(self.mean.flatten()[0]), self.std.flatten())
        fused.reads_pixels = True
        return fused


class PixelStem(nn.Module):
    """EfficientNet-Lite's stem convolution (TensorFlow "same" padding) on pixels instead of (pixels - mean) / std."""

    def __init__(self, conv: nn.Conv2d, mean: float, std: torch.Tensor):
        super().__init__()
        padding = conv.static_padding.padding if isinstance(conv.static_padding, nn.ZeroPad2d) else (0, 0, 0, 0)
        self.padding, self.mean = tuple(padding), mean
        self.stride, self.dilation, self.groups = conv.stride, conv.dilation, conv.groups
        weight = conv.weight.detach() / std.view(1, -1, 1, 1)
        bias = conv.bias.detach() if conv.bias is not None else torch.zeros(weight.shape[0])
        self.weight = nn.Parameter(weight)
        self.bias = nn.Parameter(bias - mean * weight.sum((1, 2, 3)))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = F.pad(pixels, self.padding, value=self.mean)
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _pool_at_eot(x: torch.Tensor, ids: torch.Tensor, eot_id: int) -> torch.Tensor:
    """Pool by multiplying with a one-hot of the EOT position: no argmax, no gather on ids, so it
    survives fp16/int8 conversion and every converter. The tokenizer guarantees one EOT per row."""
    return (x * (ids == eot_id).to(x.dtype).unsqueeze(-1)).sum(1)


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
        return F.normalize(self.proj(self.norm(_pool_at_eot(x, ids, self.eot_id))), dim=-1)


class MobileBertTextTower(nn.Module):
    """A MobileBERT-style bidirectional encoder (transformers' MobileBertModel, random init, eager
    attention): narrow bottlenecked blocks with stacked feed-forwards, padding masked out."""

    def __init__(self, cfg: TextConfig, embed_dim: int):
        super().__init__()
        if cfg.eot_id < 0:
            raise ValueError("TextConfig.eot_id is unset: build the student with the tokenizer's end-of-text id")
        from transformers import MobileBertConfig, MobileBertModel

        bottleneck = cfg.bottleneck or cfg.width // 2
        config = MobileBertConfig(
            vocab_size=cfg.vocab_size, hidden_size=cfg.width, num_hidden_layers=cfg.depth, num_attention_heads=cfg.heads,
            true_hidden_size=bottleneck, intra_bottleneck_size=bottleneck, embedding_size=bottleneck,
            intermediate_size=int(bottleneck * cfg.mlp_ratio), num_feedforward_networks=cfg.feedforwards,
            max_position_embeddings=cfg.context_length, type_vocab_size=1, pad_token_id=0,
            attn_implementation="eager")
        self.eot_id = cfg.eot_id
        self.encoder = MobileBertModel(config, add_pooling_layer=False)
        self.proj = nn.Linear(cfg.width, embed_dim, bias=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        ids = ids.long()
        # A ready additive (B, 1, 1, L) mask over padding (id 0): transformers then builds none itself, and
        # its mask builders use ops (new_ones, vmapped index functions) that Core ML cannot convert.
        # -1e4 rather than the dtype's minimum keeps it finite in fp16 exports.
        mask = (ids == 0).to(self.proj.weight.dtype)[:, None, None, :] * -1e4
        hidden = self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        return F.normalize(self.proj(_pool_at_eot(hidden, ids, self.eot_id)), dim=-1)


class MiniLmTextTower(nn.Module):
    """The packaged all-MiniLM-L6-v2 encoder (or its first `depth` layers), mean-pooled over the tokens
    that are not padding as the sentence-transformers teacher is, then projected. With all layers and
    `pretrained`, its pooled features before the projection are the text teacher's."""

    def __init__(self, cfg: TextConfig, embed_dim: int):
        super().__init__()
        from transformers import AutoConfig, AutoModel

        from .teachers import minilm_folder

        folder = minilm_folder()
        config = AutoConfig.from_pretrained(folder, attn_implementation="eager")
        if cfg.vocab_size != config.vocab_size:
            raise ValueError(f"text kind 'minilm' reads MiniLM's {config.vocab_size}-token vocabulary, got a tokenizer "
                             f"of {cfg.vocab_size}: train with --tokenizer minilm")
        if cfg.depth:
            config.num_hidden_layers = min(cfg.depth, config.num_hidden_layers)
        with quiet_transformers():
            self.encoder = (AutoModel.from_pretrained(folder, config=config) if cfg.pretrained
                            else AutoModel.from_config(config))
        self.encoder.pooler = None
        self.proj = nn.Linear(config.hidden_size, embed_dim, bias=False)

    def features(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, L) ids -> (B, 384) mean of the last hidden states over non-padding tokens (pad id 0)."""
        ids = ids.long()
        keep = (ids != 0).to(self.proj.weight.dtype)
        # A ready additive mask (see MobileBertTextTower): converters cannot take transformers' mask builders.
        mask = (1.0 - keep)[:, None, None, :] * -1e4
        hidden = self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        return (hidden * keep.unsqueeze(-1)).sum(1) / keep.sum(1, keepdim=True).clamp(min=1.0)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.proj(self.features(ids)), dim=-1)


IMAGE_TOWERS: dict[str, type[nn.Module]] = {"vit": VisionTransformer, "timm": TimmImageTower,
                                             "efficientnet-lite": EfficientNetLiteTower, "open_clip": OpenClipImageTower}
TEXT_TOWERS: dict[str, type[nn.Module]] = {"causal": TextTransformer, "bert": MobileBertTextTower, "minilm": MiniLmTextTower,
                                           "open_clip": OpenClipTextTower}


def _build(registry: dict[str, type[nn.Module]], kind: str, what: str, cfg, embed_dim: int) -> nn.Module:
    if kind not in registry:
        raise ValueError(f"unknown {what} tower kind {kind!r}: choose one of {', '.join(registry)}")
    return registry[kind](cfg, embed_dim)


class Student(nn.Module):
    def __init__(self, cfg: StudentConfig):
        super().__init__()
        self.config = cfg
        self.visual = _build(IMAGE_TOWERS, cfg.vision.kind, "image", cfg.vision, cfg.embed_dim)
        self.text = _build(TEXT_TOWERS, cfg.text.kind, "text", cfg.text, cfg.embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        for tower in (self.visual, self.text):
            if getattr(tower, "initialised", False):  # an imported model's tower: its weights are its own
                continue
            # A tower that starts from pretrained weights keeps them; only its new projection is initialised.
            (tower.proj if _is_pretrained(tower) else tower).apply(_init_weights)

    def forward(self, pixels: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.visual(pixels), self.text(ids)


def _is_pretrained(tower: nn.Module) -> bool:
    return isinstance(tower, (EfficientNetLiteTower, MiniLmTextTower))


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, std=0.02)
