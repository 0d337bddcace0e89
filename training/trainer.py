"""The training loop: CLIP or CLIP-PING on CPU or CUDA (AMP), with atomic checkpoints and --resume."""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from clipping_edge.errors import ClippingEdgeError
from clipping_edge.tokenizer import TextTokenizer

from .banks import FeatureBanks, build_banks
from .checkpoint import TOKENIZER, TRAINER_STATE, WEIGHTS, save_checkpoint
from .config import METHODS, StudentConfig, TrainConfig, student_config
from .data.pairs import PairSet, read_pairs, resolve_split
from .data.transforms import ImageCaptionDataset, basic_train_transform, worker_context
from .evaluate import evaluate, format_metrics
from .losses import MAX_LOGIT_SCALE, ClipLoss, ClipPingLoss, NeighbourTargets
from .models import Student
from .neighbours import mine_neighbours
from .progress import progress_bar
from .teachers import load_image_teacher, load_text_teacher
from .tokenizer_build import train_tokenizer


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ClippingEdgeError("--device cuda was asked for but torch sees no CUDA GPU: use --device cpu")
    return torch.device(name)


def param_groups(modules: list[torch.nn.Module], weight_decay: float) -> list[dict]:
    """AdamW groups: no decay on norms, biases, embeddings' positions, tokens and the logit scale."""
    decay, no_decay = [], []
    for module in modules:
        for name, p in module.named_parameters():
            if p.requires_grad:
                (no_decay if p.ndim < 2 or "pos_embed" in name or "cls_token" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def cosine_with_warmup(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def neighbour_targets(banks: FeatureBanks, image_nn: torch.Tensor, text_nn: torch.Tensor, idx: torch.Tensor,
                      device: torch.device) -> NeighbourTargets:
    j, k = image_nn[idx], text_nn[idx]

    def rows(bank: np.ndarray, which: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(np.asarray(bank[which.numpy()], dtype=np.float32)).to(device, non_blocking=True)

    return NeighbourTargets(j.to(device), k.to(device), rows(banks.image, j), rows(banks.text, j),
                            rows(banks.text, k), rows(banks.image, k))


@dataclass
class Amp:
    """Autocast settings: bf16 on CUDA where supported, else fp16 with loss scaling; off on CPU."""

    enabled: bool
    dtype: torch.dtype

    @classmethod
    def for_device(cls, device: torch.device, wanted: bool) -> "Amp":
        enabled = wanted and device.type == "cuda"
        return cls(enabled, torch.bfloat16 if enabled and torch.cuda.is_bf16_supported() else torch.float16)


@dataclass
class TrainingState:
    """Everything --resume restores: weights, heads, optimizer, schedule, loss scaler, RNG, epoch."""

    model: Student
    loss_fn: torch.nn.Module
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    epoch: int = 0

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "loss": self.loss_fn.state_dict(), "optimizer": self.optimizer.state_dict(),
                "schedule": self.schedule.state_dict(), "scaler": self.scaler.state_dict(),
                "torch_rng": torch.get_rng_state()}

    def restore(self, ckpt_dir: Path, device: torch.device) -> None:
        if not (ckpt_dir / TRAINER_STATE).is_file():
            raise ClippingEdgeError(f"--resume: {ckpt_dir} has no {TRAINER_STATE} to resume from: drop --resume to start anew")
        state = torch.load(ckpt_dir / TRAINER_STATE, map_location=device, weights_only=False)
        self.model.load_state_dict(load_file(str(ckpt_dir / WEIGHTS), device=str(device)))
        self.loss_fn.load_state_dict(state["loss"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["torch_rng"])
        self.epoch = state["epoch"]


def prepare_tokenizer(cfg: TrainConfig, scfg: StudentConfig, captions: list[str], out: Path) -> TextTokenizer:
    """A new run trains a BPE tokenizer on its captions; a resumed run keeps the one it was trained with."""
    path, saved = out / TOKENIZER, out / "checkpoint" / TOKENIZER
    if cfg.resume and saved.is_file():
        shutil.copyfile(saved, path)
        return TextTokenizer(path, scfg.text.context_length)
    return train_tokenizer(captions, scfg.text.vocab_size, scfg.text.context_length, path)


def prepare_loss(cfg: TrainConfig, scfg: StudentConfig, pairs: PairSet) -> tuple[torch.nn.Module, FeatureBanks | None]:
    if cfg.method == "clip":
        return ClipLoss(), None
    banks = build_banks(pairs, load_image_teacher(cfg.image_teacher, cfg.teacher_image_size),
                        load_text_teacher(cfg.text_teacher), workers=cfg.workers)  # teachers dropped: banks suffice
    return ClipPingLoss(scfg.embed_dim, banks.image.shape[1], banks.text.shape[1], cfg.lambda_nn, cfg.lambda_xnn,
                        cfg.nce_temperature), banks


def collate(batch: list) -> tuple[torch.Tensor, list[str], torch.Tensor]:
    return torch.stack([x[0] for x in batch]), [x[1] for x in batch], torch.tensor([x[2] for x in batch])


def train_epoch(cfg: TrainConfig, run: TrainingState, dataset: ImageCaptionDataset, tokenizer: TextTokenizer,
                banks: FeatureBanks | None, device: torch.device, amp: Amp) -> dict:
    """One pass over the data (neighbours mined first for CLIP-PING); returns the epoch's log record."""
    epoch = run.epoch
    generator = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
    dataset.epoch = epoch
    neighbours = mine_neighbours(banks.image, banks.text, cfg.support_size, generator) if banks is not None else None
    loader = torch.utils.data.DataLoader(dataset, batch_size=cfg.batch_size, shuffle=True, drop_last=True,
                                         generator=generator, num_workers=cfg.workers, collate_fn=collate,
                                         multiprocessing_context=worker_context(cfg.workers))
    model, loss_fn = run.model.train(), run.loss_fn
    params = list(model.parameters()) + list(loss_fn.parameters())
    start, seen, sums = time.perf_counter(), 0, {}
    for step, (pixels, captions, idx) in enumerate(progress_bar(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}")):
        pixels = pixels.to(device, non_blocking=True)
        ids = torch.from_numpy(tokenizer(captions, warn=False)).to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=amp.dtype, enabled=amp.enabled):
            z_img, z_txt = (z.float() for z in model(pixels, ids))
            if neighbours is not None:
                targets = neighbour_targets(banks, neighbours.image_nn, neighbours.text_nn, idx, device)
                losses = loss_fn(z_img, z_txt, model.logit_scale, targets)
            else:
                losses = {"loss": loss_fn(z_img, z_txt, model.logit_scale)}
        loss = losses["loss"]
        if not torch.isfinite(loss):
            raise ClippingEdgeError(f"loss became {loss.item()} at epoch {epoch + 1} step {step}: lower --lr "
                                    "(or disable AMP with --no-amp) and --resume from the last checkpoint")
        run.optimizer.zero_grad(set_to_none=True)
        run.scaler.scale(loss).backward()
        run.scaler.unscale_(run.optimizer)
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        run.scaler.step(run.optimizer)
        run.scaler.update()
        run.schedule.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(MAX_LOGIT_SCALE))
        seen += len(pixels)
        for key, value in losses.items():
            sums[key] = sums.get(key, 0.0) + value.item()
    seconds = time.perf_counter() - start
    record = {"epoch": epoch + 1, **{k: round(v / (step + 1), 4) for k, v in sums.items()},
              "samples_per_second": round(seen / seconds, 1), "seconds": round(seconds, 1),
              "logit_scale": round(model.logit_scale.exp().item(), 2)}
    if neighbours is not None:
        record["mining_seconds"] = round(neighbours.seconds, 2)
    return record


def train(cfg: TrainConfig) -> Path:
    """Train a student; returns the checkpoint directory (`<out>/checkpoint`)."""
    if cfg.method not in METHODS:
        raise ClippingEdgeError(f"unknown method {cfg.method!r}: choose one of {', '.join(METHODS)}")
    seed_everything(cfg.seed)
    device = pick_device(cfg.device)
    out, ckpt_dir = Path(cfg.out), Path(cfg.out) / "checkpoint"
    if not cfg.resume and (ckpt_dir / TRAINER_STATE).exists():
        raise ClippingEdgeError(f"{out} already holds a training run: pass --resume to continue it, or a new --out")
    out.mkdir(parents=True, exist_ok=True)

    pairs = read_pairs(resolve_split(cfg.data, "train"), limit=cfg.limit)
    scfg = student_config(cfg.student)
    tokenizer = prepare_tokenizer(cfg, scfg, pairs.captions, out)
    scfg.text.vocab_size, scfg.text.eot_id = tokenizer.vocab_size, tokenizer.eot_id
    model = Student(scfg).to(device)
    loss_fn, banks = prepare_loss(cfg, scfg, pairs)
    loss_fn = loss_fn.to(device)
    if banks is not None:
        (out / "banks.json").write_text(json.dumps({"path": str(banks.path), "reused": banks.reused, **banks.stats}, indent=2))

    dataset = ImageCaptionDataset(pairs.pairs, basic_train_transform(scfg.vision.image_size), cfg.seed)
    steps_per_epoch = len(dataset) // cfg.batch_size
    if steps_per_epoch == 0:
        raise ClippingEdgeError(f"{len(dataset)} training pairs is fewer than one batch of {cfg.batch_size}: lower --batch-size")
    total_steps = steps_per_epoch * cfg.epochs
    optimizer = torch.optim.AdamW(param_groups([model, loss_fn], cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6)
    amp = Amp.for_device(device, cfg.amp)
    run = TrainingState(model, loss_fn, optimizer,
                        torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: cosine_with_warmup(s, cfg.warmup_steps, total_steps)),
                        torch.amp.GradScaler("cuda", enabled=amp.enabled and amp.dtype == torch.float16))
    if cfg.resume:
        run.restore(ckpt_dir, device)
        print(f"resuming {out} at epoch {run.epoch}")

    print(f"training {scfg.name} with {cfg.method} on {len(pairs)} pairs, {cfg.epochs} epochs x {steps_per_epoch} steps, "
          f"batch {cfg.batch_size}, device {device}" + (f", autocast {str(amp.dtype)[6:]}" if amp.enabled else ""))
    test_pairs = None
    while run.epoch < cfg.epochs:
        record = train_epoch(cfg, run, dataset, tokenizer, banks, device, amp)
        run.epoch += 1
        if cfg.eval_every and run.epoch % cfg.eval_every == 0 and run.epoch < cfg.epochs:
            test_pairs = test_pairs or read_pairs(resolve_split(cfg.data, "test"))
            record.update({k: round(v, 4) for k, v in evaluate(model, tokenizer, test_pairs, device).items()})
        print(" ".join(f"{k}={v}" for k, v in record.items()))
        with open(out / "log.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        save_checkpoint(ckpt_dir, model, out / TOKENIZER, {"train": asdict(cfg), "epoch": run.epoch}, run.state_dict())

    metrics = evaluate(model, tokenizer, test_pairs or read_pairs(resolve_split(cfg.data, "test")), device)
    print(f"held-out: {format_metrics(metrics)}")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return ckpt_dir
