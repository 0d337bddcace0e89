"""Bring your own CLIP: a pretrained CLIP-family model becomes a checkpoint like the ones `train` writes.

Specs (weights only ever from a local file or folder; `random` builds the architecture untrained, for tests):
  open_clip:ARCH=WEIGHTS.safetensors   an architecture open_clip ships (ViT-B-32, MobileCLIP-S2, MobileCLIP2-S0, ...)
  open_clip:CONFIG.json=WEIGHTS        your own open_clip model config ({"embed_dim", "vision_cfg", "text_cfg"})
  open_clip:FOLDER                     a downloaded open_clip hub folder (open_clip_config.json + *.safetensors)
  hf:FOLDER                            a transformers CLIPModel folder (config.json + model.safetensors)
A model with a tokenizer of its own (SigLIP's SentencePiece, which open_clip would fetch from a model hub) reads it
from a file beside the weights or the config, or in the hub folder: tokenizer.json or spiece.model.

What comes out is everything the pipeline needs and nothing about where it came from: open_clip's towers
(clip_towers.py), CLIP's tokenizer (clip_tokenizer.py) or the model's own (model_tokenizer.py) as a tokenizer.json
with the real context length, the model's preprocessing as data (resize mode, filter, mean/std), its logit scale
and, for a sigmoid model (SigLIP), its logit bias. Hugging Face CLIP weights
are renamed into open_clip's layout, so both paths share one set of towers. Nothing is unpickled: weights are
read from safetensors only.
"""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from clipping_edge.errors import ClippingEdgeError
from clipping_edge.preprocess import Preprocess
from clipping_edge.tokenizer import TextTokenizer

from .clip_tokenizer import CLIP_VOCAB_SIZE, clip_tokenizer
from .compat import import_open_clip
from .config import StudentConfig, TextConfig, VisionConfig
from .model_tokenizer import TOKENIZER_FILES, find_tokenizer, model_tokenizer
from .models import Student

SPEC_PREFIXES = ("open_clip:", "hf:")
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
HF_RESAMPLE = {2: "bilinear", 3: "bicubic"}  # PIL's enum values in preprocessor_config.json


def is_spec(value: str | Path) -> bool:
    return str(value).startswith(SPEC_PREFIXES)


@dataclass
class ClipModel:
    """One pretrained CLIP-family model, in open_clip's terms."""
    name: str
    model_cfg: dict[str, Any]  # open_clip's: embed_dim, vision_cfg, text_cfg, quick_gelu, custom_text
    preprocess: Preprocess
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    state: dict[str, torch.Tensor] | None  # open_clip's custom-text layout (visual.*, text.*, logit_scale); None: random
    source: str
    tokenizer_file: Path | None = None  # the model's own tokenizer (None: CLIP's)
    text_clean: str = "whitespace"  # the cleaning before that tokenizer (open_clip's tokenizer_kwargs.clean)

    @property
    def logit_bias(self) -> float | None:
        """A sigmoid model's bias (SigLIP: p = sigmoid(scale * cos + bias)); None for a softmax CLIP."""
        if self.state is not None and "logit_bias" in self.state:
            return float(self.state["logit_bias"].reshape(-1)[0])
        bias = self.model_cfg.get("init_logit_bias")
        return None if bias is None else float(bias)


def _safetensors(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix != ".safetensors":
        raise ClippingEdgeError(f"{path} is not a .safetensors file: weights are read from safetensors only (nothing is "
                                "unpickled); convert it once with safetensors.torch.save_file, or download the "
                                ".safetensors the model's page offers")
    if not path.is_file():
        raise ClippingEdgeError(f"weights file {path} does not exist: pass the path of the model's .safetensors")
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as exc:
        raise ClippingEdgeError(f"{path} is not a readable safetensors file ({str(exc)[:200]}): download it again") from None


def _read_json(path: Path, what: str) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise ClippingEdgeError(f"{what} {path} is not readable JSON ({exc}): pass the file the model came with") from None
    if not isinstance(data, dict):
        raise ClippingEdgeError(f"{what} {path} is not a JSON object: pass the file the model came with")
    return data


def _open_clip_preprocess(arch: str, model_cfg: dict, overrides: dict | None = None) -> tuple[Preprocess, tuple, tuple]:
    """open_clip's defaults, then what every pretrained tag of the architecture agrees on (MobileCLIP: no mean/std,
    bilinear), then a hub folder's own preprocess_cfg."""
    open_clip = import_open_clip()
    cfg: dict[str, Any] = {"mean": OPENAI_MEAN, "std": OPENAI_STD, "interpolation": "bicubic", "resize_mode": "shortest"}
    tags = [open_clip.get_pretrained_cfg(arch, tag) for tag in open_clip.list_pretrained_tags_by_model(arch)] if arch else []
    for key in cfg:
        values = {json.dumps(tag.get(key)) for tag in tags if tag.get(key) is not None}
        if len(values) == 1:
            cfg[key] = json.loads(values.pop())
    cfg.update({k: v for k, v in (overrides or {}).items() if v is not None})
    size = model_cfg["vision_cfg"].get("image_size", 224)
    size = size[0] if isinstance(size, (list, tuple)) else size
    if cfg["resize_mode"] not in ("shortest", "squash"):
        raise ClippingEdgeError(f"{arch or 'this model'} resizes with {cfg['resize_mode']!r}: only shortest (with a centre "
                                "crop) and squash are supported")
    return Preprocess(int(size), cfg["resize_mode"], cfg["interpolation"]), tuple(cfg["mean"]), tuple(cfg["std"])


def _open_clip_state(model_cfg: dict, weights: Path) -> dict[str, torch.Tensor]:
    """Weights through open_clip's own loader (it renames third-party layouts), in the custom-text layout."""
    open_clip = import_open_clip()
    from open_clip.model import CustomTextCLIP

    _safetensors(weights)  # refuses anything but a readable .safetensors before open_clip opens it
    # The custom-text model takes both layouts: open_clip's loader renames CLIP's flat text keys into it.
    model = CustomTextCLIP(**{k: v for k, v in model_cfg.items() if k != "custom_text"})
    try:
        open_clip.load_checkpoint(model, str(weights))
    except RuntimeError as exc:
        raise ClippingEdgeError(f"{weights} does not fit this architecture ({str(exc).splitlines()[0][:200]}): pass the "
                                "architecture the weights were trained with") from None
    return model.state_dict()


def _parse_open_clip(body: str) -> ClipModel:
    open_clip = import_open_clip()
    target, _, weights = body.partition("=")
    path = Path(target)
    overrides = None
    if path.is_dir():
        config = _read_json(path / "open_clip_config.json", "open_clip config")
        model_cfg, overrides, arch = config.get("model_cfg"), config.get("preprocess_cfg", {}), ""
        found = sorted(path.glob("*.safetensors"))
        if not found:
            raise ClippingEdgeError(f"{path} has no .safetensors weights: download the model's open_clip_model.safetensors "
                                    "into it")
        weights = str(found[0])
    elif path.suffix == ".json":
        model_cfg, arch = _read_json(path, "open_clip model config"), ""
    else:
        arch, model_cfg = target, open_clip.get_model_config(target)
        if model_cfg is None:
            import difflib

            close = difflib.get_close_matches(target, open_clip.list_models(), n=1)
            raise ClippingEdgeError(f"open_clip has no architecture {target!r}: {f'did you mean {close[0]!r}? ' if close else ''}"
                                    "see open_clip.list_models(), or pass a model config .json")
    if not isinstance(model_cfg, dict) or not {"embed_dim", "vision_cfg", "text_cfg"} <= set(model_cfg):
        raise ClippingEdgeError(f"{target} does not describe an open_clip model: it needs embed_dim, vision_cfg and text_cfg")
    if not weights:
        raise ClippingEdgeError(f"open_clip:{target} names no weights: pass open_clip:{target}=/path/weights.safetensors "
                                "(or =random for an untrained model); nothing is downloaded")
    text_cfg = model_cfg["text_cfg"]
    tokenizer_file = None
    if text_cfg.get("hf_tokenizer_name") or text_cfg.get("vocab_size", CLIP_VOCAB_SIZE) != CLIP_VOCAB_SIZE:
        # the hub folder, the config's folder, the weights' folder; never the working directory
        folders = [path] if path.is_dir() else [path.parent] if path.suffix == ".json" else []
        if weights not in ("", "random"):
            folders.append(Path(weights).parent)
        tokenizer_file = find_tokenizer(*folders)
        if tokenizer_file is None:
            own = text_cfg.get("hf_tokenizer_name") or f"a {text_cfg.get('vocab_size')}-token vocabulary"
            where = folders[-1] if folders else "the weights' folder"
            raise ClippingEdgeError(f"{target} uses a tokenizer of its own ({own}), which open_clip fetches from a model "
                                    f"hub: put its tokenizer.json or spiece.model in {where} (beside the weights), "
                                    "or pass the downloaded hub folder as open_clip:FOLDER")
    preprocess, mean, std = _open_clip_preprocess(arch, model_cfg, overrides)
    state = None if weights == "random" else _open_clip_state(model_cfg, Path(weights))
    name = arch or path.stem
    clean = text_cfg.get("tokenizer_kwargs", {}).get("clean", "whitespace")
    return ClipModel(name, model_cfg, preprocess, mean, std, state, f"open_clip:{body}", tokenizer_file, clean)


# transformers' encoder layer -> open_clip's residual block and timm's ViT block (q/k/v packed apart)
OPEN_CLIP_BLOCK = {"layer_norm1": "ln_1", "layer_norm2": "ln_2", "self_attn.out_proj": "attn.out_proj",
                   "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj"}
TIMM_BLOCK = {"layer_norm1": "norm1", "layer_norm2": "norm2", "self_attn.out_proj": "attn.proj", "mlp.fc1": "mlp.fc1",
              "mlp.fc2": "mlp.fc2"}


def _hf_layers(hf: dict[str, torch.Tensor], tower: str, blocks: str, qkv: str,
               renames: dict[str, str]) -> dict[str, torch.Tensor]:
    """One transformers encoder's layers under `blocks`.N: q, k and v packed into one `qkv` projection, the rest renamed."""
    out = {}
    for i in sorted({int(k.split(".")[3]) for k in hf if k.startswith(f"{tower}encoder.layers.")}):
        src, dst = f"{tower}encoder.layers.{i}.", f"{blocks}.{i}."
        for kind in ("weight", "bias"):
            out[f"{dst}{qkv}{kind}"] = torch.cat([hf[f"{src}self_attn.{p}_proj.{kind}"] for p in "qkv"])
            out.update({f"{dst}{new}.{kind}": hf[f"{src}{old}.{kind}"] for old, new in renames.items()})
    return out


def _hf_state(hf: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers' CLIPModel keys -> open_clip's (custom-text layout); q/k/v packed into one projection."""
    v, t = "vision_model.", "text_model."
    out = {**_hf_layers(hf, v, "visual.transformer.resblocks", "attn.in_proj_", OPEN_CLIP_BLOCK),
           **_hf_layers(hf, t, "text.transformer.resblocks", "attn.in_proj_", OPEN_CLIP_BLOCK)}
    out.update({
        "visual.class_embedding": hf[f"{v}embeddings.class_embedding"],
        "visual.conv1.weight": hf[f"{v}embeddings.patch_embedding.weight"],
        "visual.positional_embedding": hf[f"{v}embeddings.position_embedding.weight"],
        "visual.proj": hf["visual_projection.weight"].T.contiguous(),
        "text.token_embedding.weight": hf[f"{t}embeddings.token_embedding.weight"],
        "text.positional_embedding": hf[f"{t}embeddings.position_embedding.weight"],
        "text.text_projection": hf["text_projection.weight"].T.contiguous(),
        "logit_scale": hf["logit_scale"].reshape(()),
    })
    for kind in ("weight", "bias"):
        out[f"visual.ln_pre.{kind}"] = hf[f"{v}pre_layrnorm.{kind}"]
        out[f"visual.ln_post.{kind}"] = hf[f"{v}post_layernorm.{kind}"]
        out[f"text.ln_final.{kind}"] = hf[f"{t}final_layer_norm.{kind}"]
    return out


# transformers' defaults for a tower config that leaves its sizes out (ViT-B)
VIT_B = {"hidden_size": 768, "num_hidden_layers": 12, "intermediate_size": 3072, "num_attention_heads": 12}


def _hf_weights(folder: Path, rename: Callable[[dict], dict], model_class: str) -> dict[str, torch.Tensor]:
    """The folder's model.safetensors in open_clip's layout; a file of another model is one error, not a KeyError."""
    path = folder / "model.safetensors"
    try:
        return rename(_safetensors(path))
    except KeyError as exc:
        raise ClippingEdgeError(f"{path} holds no {exc.args[0]}: it is not a transformers {model_class}'s weights; pass "
                                "the model.safetensors saved with its config.json") from None


def _hf_tower(cfg: dict, defaults: dict) -> dict:
    """A transformers tower config in open_clip's terms."""
    cfg = {**defaults, **cfg}
    return {"width": cfg["hidden_size"], "layers": cfg["num_hidden_layers"], "heads": cfg["num_attention_heads"],
            "mlp_ratio": cfg["intermediate_size"] / cfg["hidden_size"]}


def _hf_preprocess(folder: Path, size: int) -> tuple[Preprocess, tuple, tuple]:
    """preprocessor_config.json: CLIP resizes the short side and crops the centre; SigLIP resizes to the square."""
    processor = _read_json(folder / "preprocessor_config.json", "preprocessor config") \
        if (folder / "preprocessor_config.json").is_file() else {}
    interpolation = HF_RESAMPLE.get(processor.get("resample", 3), "bicubic")
    mean, std = tuple(processor.get("image_mean", OPENAI_MEAN)), tuple(processor.get("image_std", OPENAI_STD))
    crop = processor.get("crop_size") if processor.get("do_center_crop", "crop_size" in processor) else None
    if crop is None and isinstance(processor.get("size"), dict) and "height" in processor["size"]:
        return Preprocess(int(processor["size"]["height"]), "squash", interpolation), mean, std
    crop = crop if crop is not None else size
    crop = crop.get("height", crop) if isinstance(crop, dict) else crop
    return Preprocess(int(crop), "shortest", interpolation), mean, std


def _parse_hf(body: str) -> ClipModel:
    folder = Path(body)
    if not folder.is_dir():
        raise ClippingEdgeError(f"hf:{body} is not a folder: pass the folder a transformers CLIPModel or SiglipModel was "
                                "saved to")
    config = _read_json(folder / "config.json", "transformers config")
    if config.get("model_type") == "siglip":
        return _parse_hf_siglip(folder, config)
    if config.get("model_type") != "clip":
        raise ClippingEdgeError(f"{folder} holds a {config.get('model_type')!r} model: hf: takes a transformers CLIPModel "
                                "(model_type clip) or SiglipModel (siglip)")
    vision, text = config.get("vision_config", {}), config.get("text_config", {})
    acts = {vision.get("hidden_act", "quick_gelu"), text.get("hidden_act", "quick_gelu")}
    if len(acts) != 1 or not acts <= {"quick_gelu", "gelu"}:
        raise ClippingEdgeError(f"{folder}: activations {sorted(acts)} are not supported (quick_gelu or gelu, the same in both towers)")
    if text.get("vocab_size", CLIP_VOCAB_SIZE) != CLIP_VOCAB_SIZE:
        raise ClippingEdgeError(f"{folder}: a text vocabulary of {text.get('vocab_size')} tokens is not CLIP's {CLIP_VOCAB_SIZE}")
    vis = _hf_tower(vision, VIT_B)
    txt = _hf_tower(text, {"hidden_size": 512, "num_hidden_layers": 12, "intermediate_size": 2048, "num_attention_heads": 8})
    model_cfg = {
        "embed_dim": config.get("projection_dim", 512), "quick_gelu": acts == {"quick_gelu"},
        "vision_cfg": {"image_size": vision.get("image_size", 224), "patch_size": vision.get("patch_size", 32),
                       "width": vis["width"], "layers": vis["layers"], "mlp_ratio": vis["mlp_ratio"],
                       "head_width": vis["width"] // vis["heads"]},
        "text_cfg": {"context_length": text.get("max_position_embeddings", 77), "vocab_size": CLIP_VOCAB_SIZE,
                     "width": txt["width"], "heads": txt["heads"], "layers": txt["layers"], "mlp_ratio": txt["mlp_ratio"]},
    }
    preprocess, mean, std = _hf_preprocess(folder, model_cfg["vision_cfg"]["image_size"])
    state = _hf_weights(folder, _hf_state, "CLIPModel")
    return ClipModel(folder.name, model_cfg, preprocess, mean, std, state, f"hf:{body}")


def _hf_siglip_state(hf: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers' SiglipModel keys -> timm's attention-pooled ViT (visual.trunk.*) and open_clip's text
    transformer (text.*), the layouts open_clip's own SigLIP models use."""
    v, t = "vision_model.", "text_model."
    out = {**_hf_layers(hf, v, "visual.trunk.blocks", "attn.qkv.", TIMM_BLOCK),
           **_hf_layers(hf, t, "text.transformer.resblocks", "attn.in_proj_", OPEN_CLIP_BLOCK)}
    head, pool = f"{v}head.", "visual.trunk.attn_pool."
    width = hf[f"{head}attention.in_proj_weight"].shape[1]
    out.update({
        "visual.trunk.patch_embed.proj.weight": hf[f"{v}embeddings.patch_embedding.weight"],
        "visual.trunk.patch_embed.proj.bias": hf[f"{v}embeddings.patch_embedding.bias"],
        "visual.trunk.pos_embed": hf[f"{v}embeddings.position_embedding.weight"].unsqueeze(0),
        f"{pool}latent": hf[f"{head}probe"],
        f"{pool}q.weight": hf[f"{head}attention.in_proj_weight"][:width],
        f"{pool}q.bias": hf[f"{head}attention.in_proj_bias"][:width],
        f"{pool}kv.weight": hf[f"{head}attention.in_proj_weight"][width:],
        f"{pool}kv.bias": hf[f"{head}attention.in_proj_bias"][width:],
        "text.token_embedding.weight": hf[f"{t}embeddings.token_embedding.weight"],
        "text.positional_embedding": hf[f"{t}embeddings.position_embedding.weight"],
        "logit_scale": hf["logit_scale"].reshape(()), "logit_bias": hf["logit_bias"].reshape(()),
    })
    for kind in ("weight", "bias"):
        out[f"visual.trunk.norm.{kind}"] = hf[f"{v}post_layernorm.{kind}"]
        out[f"{pool}proj.{kind}"] = hf[f"{head}attention.out_proj.{kind}"]
        out[f"{pool}norm.{kind}"] = hf[f"{head}layernorm.{kind}"]
        out[f"{pool}mlp.fc1.{kind}"] = hf[f"{head}mlp.fc1.{kind}"]
        out[f"{pool}mlp.fc2.{kind}"] = hf[f"{head}mlp.fc2.{kind}"]
        out[f"text.ln_final.{kind}"] = hf[f"{t}final_layer_norm.{kind}"]
        out[f"text.text_projection.{kind}"] = hf[f"{t}head.{kind}"]
    return out


def _parse_hf_siglip(folder: Path, config: dict) -> ClipModel:
    """A transformers SiglipModel folder: its vision tower as timm builds SigLIP (attention-pooled ViT, no class
    token), its text tower as open_clip does (bidirectional, pooled at the last position), its SentencePiece
    tokenizer with transformers' cleaning (lower case, punctuation removed)."""
    vision, text = config.get("vision_config", {}), config.get("text_config", {})
    acts = {vision.get("hidden_act", "gelu_pytorch_tanh"), text.get("hidden_act", "gelu_pytorch_tanh")}
    if not acts <= {"gelu_pytorch_tanh", "gelu"} or len(acts) != 1:
        raise ClippingEdgeError(f"{folder}: activations {sorted(acts)} are not supported (gelu_pytorch_tanh or gelu)")
    if not vision.get("vision_use_head", True):
        raise ClippingEdgeError(f"{folder}: a SigLIP vision tower without its attention-pooling head is not supported")
    tanh = acts == {"gelu_pytorch_tanh"}
    vis, txt = _hf_tower(vision, VIT_B), _hf_tower(text, VIT_B)
    size, eps = vision.get("image_size", 224), vision.get("layer_norm_eps", 1e-6)
    if eps != 1e-6:
        raise ClippingEdgeError(f"{folder}: a vision layer-norm epsilon of {eps} is not supported (SigLIP's is 1e-6)")
    if text.get("projection_size", txt["width"]) != vis["width"]:
        raise ClippingEdgeError(f"{folder}: the text head's {text.get('projection_size')} outputs do not match the image "
                                f"tower's {vis['width']} features")
    model_cfg = {
        "embed_dim": vis["width"],
        "vision_cfg": {"image_size": size, "timm_model_name": "vit_base_patch16_siglip_224",
                       "timm_model_kwargs": {"img_size": size, "patch_size": vision.get("patch_size", 16),
                                             "embed_dim": vis["width"], "depth": vis["layers"], "num_heads": vis["heads"],
                                             "mlp_ratio": vis["mlp_ratio"], "class_token": False, "global_pool": "map",
                                             "act_layer": "gelu_tanh" if tanh else "gelu"}},
        "text_cfg": {"context_length": text.get("max_position_embeddings", 64), "vocab_size": text.get("vocab_size", 32000),
                     "width": txt["width"], "heads": txt["heads"], "layers": txt["layers"], "mlp_ratio": txt["mlp_ratio"],
                     "no_causal_mask": True, "proj_bias": True, "pool_type": "last",
                     "norm_kwargs": {"eps": text.get("layer_norm_eps", 1e-6)},
                     **({"act_kwargs": {"approximate": "tanh"}} if tanh else {})},
    }
    tokenizer_file = find_tokenizer(folder)
    if tokenizer_file is None:
        raise ClippingEdgeError(f"{folder} has no tokenizer: put the model's spiece.model (or tokenizer.json) in it")
    preprocess, mean, std = _hf_preprocess(folder, size)
    state = _hf_weights(folder, _hf_siglip_state, "SiglipModel")
    return ClipModel(folder.name, model_cfg, preprocess, mean, std, state, f"hf:{folder}", tokenizer_file, "siglip")


def resolve(spec: str) -> ClipModel:
    kind, _, body = str(spec).partition(":")
    if kind == "open_clip" and body:
        return _parse_open_clip(body)
    if kind == "hf" and body:
        return _parse_hf(body)
    raise ClippingEdgeError(f"{spec!r} is not a model spec: use open_clip:ARCH=WEIGHTS.safetensors, open_clip:FOLDER or "
                            "hf:FOLDER")


def student_config(model: ClipModel, eot_id: int) -> StudentConfig:
    cfg = model.model_cfg
    quick_gelu = bool(cfg.get("quick_gelu", False))
    vision = VisionConfig(kind="open_clip", image_size=model.preprocess.size, mean=model.mean, std=model.std,
                          resize=model.preprocess.resize, interpolation=model.preprocess.interpolation,
                          open_clip={**cfg["vision_cfg"], "quick_gelu": quick_gelu})
    text = TextConfig(kind="open_clip", context_length=cfg["text_cfg"].get("context_length", 77),
                      vocab_size=cfg["text_cfg"].get("vocab_size", CLIP_VOCAB_SIZE), eot_id=eot_id,
                      open_clip={**cfg["text_cfg"], "quick_gelu": quick_gelu})
    return StudentConfig(name=model.name, embed_dim=cfg["embed_dim"], vision=vision, text=text)


def build_student(model: ClipModel, tokenizer_path: Path) -> tuple[Student, Any]:
    """The imported model as a Student (eval mode), its weights in place, and its tokenizer written at `tokenizer_path`."""
    context = model.model_cfg["text_cfg"].get("context_length", 77)
    if model.tokenizer_file is None:
        tokenizer = clip_tokenizer(context, tokenizer_path)
    else:
        model_tokenizer(model.tokenizer_file, context, model.text_clean).save(str(tokenizer_path))
        tokenizer = TextTokenizer(tokenizer_path, context)
        vocab = model.model_cfg["text_cfg"].get("vocab_size", CLIP_VOCAB_SIZE)
        if tokenizer.vocab_size > vocab:
            raise ClippingEdgeError(f"{model.tokenizer_file} has {tokenizer.vocab_size} tokens, more than the text tower's "
                                    f"{vocab}: pass the tokenizer the model was trained with")
    student = Student(student_config(model, tokenizer.eot_id))
    if model.state is not None:
        for prefix, tower in (("visual.", student.visual), ("text.", student.text)):
            part = {k[len(prefix):]: v for k, v in model.state.items() if k.startswith(prefix)}
            try:
                missing, unexpected = tower.net.load_state_dict(part, strict=False)
            except RuntimeError as exc:  # a tensor of another shape: the config and the weights disagree
                raise ClippingEdgeError(f"{model.source}: the weights do not fit the architecture "
                                        f"({str(exc).splitlines()[-1].strip()[:200]}): pass the config they were saved "
                                        "with") from None
            if missing or unexpected:
                raise ClippingEdgeError(f"{model.source}: the weights do not fit the architecture (missing "
                                        f"{missing[:3]}, unexpected {unexpected[:3]}): pass the architecture they were trained with")
        scale = model.state.get("logit_scale")
        if scale is not None:
            student.logit_scale.data.fill_(float(scale.reshape(-1)[0]))
    return student.eval(), tokenizer


def import_clip(spec: str, out: str | Path, force: bool = False) -> Path:
    """Write `spec`'s model as a checkpoint folder (model.safetensors + config.json + tokenizer.json) at `out`."""
    from .checkpoint import save_checkpoint

    model = resolve(spec)
    with tempfile.TemporaryDirectory() as tmp:
        student, tokenizer = build_student(model, Path(tmp) / "tokenizer.json")
        if not all(torch.isfinite(p).all() for p in student.parameters()):
            raise ClippingEdgeError(f"{model.source} has non-finite weights (NaN or inf): download the weights again")
        meta = {"imported": {"spec": spec, "weights": "random" if model.state is None else "loaded",
                             "preprocess": model.preprocess.to_json(), "mean": list(model.mean), "std": list(model.std),
                             "logit_scale": round(math.exp(float(student.logit_scale.detach())), 4),
                             "logit_bias": model.logit_bias}}
        return save_checkpoint(Path(out), student, Path(tmp) / "tokenizer.json", meta, force=force)


def imported_checkpoint(spec: str) -> Path:
    """`spec` imported once into the cache (keyed by the spec and the size and time of each file it reads), for commands
    that take a checkpoint: `export --checkpoint open_clip:...` works without a separate `import`."""
    import hashlib
    import os

    from clipping_edge.atomic import output_kind

    from .data.synthetic_cache import cache_dir

    # Every file the spec reads: the config, the weights, a folder's files and a tokenizer beside them.
    files = set()
    for part in str(spec).partition(":")[2].split("="):
        path = Path(part)
        if path.is_dir():
            files.update(p for p in path.iterdir() if p.is_file())
        elif path.is_file():
            files.update([path, *(path.parent / name for name in TOKENIZER_FILES if (path.parent / name).is_file())])
    stamp = [f"{f}|{os.stat(f).st_size}|{os.stat(f).st_mtime_ns}" for f in sorted(files)]
    key = hashlib.sha256("\n".join([str(spec), *stamp]).encode()).hexdigest()[:20]
    out = cache_dir() / "imported" / key
    if output_kind(out) != "checkpoint":
        import_clip(spec, out)
    return out


def clip_teachers(spec: str) -> tuple[Any, Any]:
    """One CLIP model's two towers as the CLIP-PING teachers (`train --teacher SPEC`): its image embeddings fill
    the image bank, its text embeddings the text bank, each read at the model's own preprocessing and tokenizer."""
    from .locking import weights_identity
    from .teachers import ImageTeacher, TextTeacher

    model = resolve(spec)
    with tempfile.TemporaryDirectory() as tmp:
        student, tokenizer = build_student(model, Path(tmp) / "tokenizer.json")
    student.requires_grad_(False)
    image, text = student.visual, student.text
    size = model.preprocess.size

    def encode_texts(texts):
        ids = torch.from_numpy(tokenizer(list(texts), warn=False)).to(next(text.parameters()).device)
        return text.features(ids)

    dim = model.model_cfg["embed_dim"]
    how = f"{model.preprocess.resize}|{model.preprocess.interpolation}"
    return (ImageTeacher(f"clip-image:{model.name}", dim, size, image.features, module=image, preprocess=model.preprocess,
                         identity=f"clip-image|{weights_identity(image)}|px{size}|{how}"),
            TextTeacher(f"clip-text:{model.name}", dim, encode_texts, module=text,
                        identity=f"clip-text|{weights_identity(text)}|len{tokenizer.context_length}"))


def parse_keep(value: str, total: int, what: str) -> list[int]:
    """`--keep-*-blocks`: a count (that many blocks spread evenly from the first to the last) or a list "0,3,11"."""
    try:
        numbers = [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        numbers = []
    if not numbers:
        raise ClippingEdgeError(f"--keep-{what}-blocks {value!r} is neither a count nor a list of block numbers such as 0,5,11")
    if len(numbers) == 1 and "," not in value:
        count = numbers[0]
        if not 1 <= count <= total:
            raise ClippingEdgeError(f"--keep-{what}-blocks {count}: the {what} tower has {total} blocks; keep 1 to {total}")
        return sorted({round(i * (total - 1) / max(count - 1, 1)) for i in range(count)}) if count > 1 else [total - 1]
    if sorted(set(numbers)) != numbers or numbers[0] < 0 or numbers[-1] >= total:
        raise ClippingEdgeError(f"--keep-{what}-blocks {value!r}: give increasing block numbers from 0 to {total - 1}")
    return numbers


def inherit_blocks(student: Student, keep_image: str = "", keep_text: str = "") -> tuple[Student, dict[str, list[int]]]:
    """A smaller student that inherits the chosen transformer blocks of an imported model (TinyCLIP's manual weight
    inheritance): everything else (embeddings, norms, projections, logit scale) is copied as it is."""
    import copy

    cfg = copy.deepcopy(student.config)
    kept: dict[str, list[int]] = {}
    for what, value, tower_cfg, key in (("image", keep_image, cfg.vision.open_clip, "layers"),
                                        ("text", keep_text, cfg.text.open_clip, "layers")):
        if not value:
            continue
        if what == "image" and ("timm_model_name" in tower_cfg and tower_cfg["timm_model_name"]):
            raise ClippingEdgeError(f"--keep-image-blocks: {tower_cfg['timm_model_name']} is a timm trunk of stages, not a "
                                    "stack of blocks: keep its image tower whole (only ViT towers can drop blocks)")
        total = tower_cfg.get(key, 12)
        if not isinstance(total, int):
            raise ClippingEdgeError(f"--keep-{what}-blocks: this {what} tower is not a stack of transformer blocks")
        kept[what] = parse_keep(value, total, what)
        tower_cfg[key] = len(kept[what])
    cfg.name = f"{cfg.name}-inherited"
    smaller = Student(cfg)
    state = {}
    for name, tensor in student.state_dict().items():
        parts = name.split(".")
        tower = {"visual": "image", "text": "text"}.get(parts[0])
        if tower in kept and parts[1:4] == ["net", "transformer", "resblocks"]:
            old = int(parts[4])
            if old not in kept[tower]:
                continue
            parts[4] = str(kept[tower].index(old))
        state[".".join(parts)] = tensor
    smaller.load_state_dict(state)
    return smaller, kept
