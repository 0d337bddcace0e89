"""The training loop: CLIP or CLIP-PING on CPU or CUDA (AMP), with atomic checkpoints and --resume."""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from clipping_edge.errors import ClippingEdgeError

from .banks import FeatureBanks, build_banks
from .checkpoint import TOKENIZER, TRAINER_STATE, save_checkpoint
from .config import METHODS, TrainConfig, student_config
from .data.pairs import read_pairs, resolve_split
from .data.transforms import ImageCaptionDataset, basic_train_transform
from .evaluate import evaluate, format_metrics
from .losses import ClipLoss, ClipPingLoss, NeighbourTargets
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


def train(cfg: TrainConfig) -> Path:
    """Train a student; returns the checkpoint directory (`<out>/checkpoint`)."""
    if cfg.method not in METHODS:
        raise ClippingEdgeError(f"unknown method {cfg.method!r}: choose one of {', '.join(METHODS)}")
    seed_everything(cfg.seed)
    device = pick_device(cfg.device)
    out = Path(cfg.out)
    ckpt_dir = out / "checkpoint"
    if not cfg.resume and (ckpt_dir / TRAINER_STATE).exists():
        raise ClippingEdgeError(f"{out} already holds a training run: pass --resume to continue it, or a new --out")
    out.mkdir(parents=True, exist_ok=True)

    pairs = read_pairs(resolve_split(cfg.data, "train"), limit=cfg.limit)
    scfg = student_config(cfg.student)
    tokenizer_file = out / TOKENIZER
    if cfg.resume and (ckpt_dir / TOKENIZER).is_file():
        tokenizer_file.write_bytes((ckpt_dir / TOKENIZER).read_bytes())
        from clipping_edge.tokenizer import TextTokenizer

        tokenizer = TextTokenizer(tokenizer_file, scfg.text.context_length)
    else:
        tokenizer = train_tokenizer(pairs.captions, scfg.text.vocab_size, scfg.text.context_length, tokenizer_file)
    scfg.text.vocab_size, scfg.text.eot_id = tokenizer.vocab_size, tokenizer.eot_id
    model = Student(scfg).to(device)

    banks = None
    if cfg.method == "clip-ping":
        image_teacher = load_image_teacher(cfg.image_teacher, cfg.teacher_image_size)
        text_teacher = load_text_teacher(cfg.text_teacher)
        banks = build_banks(pairs, image_teacher, text_teacher)
        del image_teacher, text_teacher  # frozen features are all training needs from them
        loss_fn: torch.nn.Module = ClipPingLoss(scfg.embed_dim, banks.image.shape[1], banks.text.shape[1],
                                                cfg.lambda_nn, cfg.lambda_xnn, cfg.nce_temperature)
    else:
        loss_fn = ClipLoss()
    loss_fn = loss_fn.to(device)

    dataset = ImageCaptionDataset(pairs.pairs, basic_train_transform(scfg.vision.image_size), cfg.seed)
    steps_per_epoch = len(dataset) // cfg.batch_size
    if steps_per_epoch == 0:
        raise ClippingEdgeError(f"{len(dataset)} training pairs is fewer than one batch of {cfg.batch_size}: lower --batch-size")
    total_steps = steps_per_epoch * cfg.epochs
    optimizer = torch.optim.AdamW(param_groups([model, loss_fn], cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: cosine_with_warmup(s, cfg.warmup_steps, total_steps))
    use_amp = cfg.amp and device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)

    start_epoch = 0
    if cfg.resume:
        if not (ckpt_dir / TRAINER_STATE).is_file():
            raise ClippingEdgeError(f"--resume: {ckpt_dir} has no {TRAINER_STATE} to resume from: drop --resume to start anew")
        state = torch.load(ckpt_dir / TRAINER_STATE, map_location=device, weights_only=False)
        from safetensors.torch import load_file

        model.load_state_dict(load_file(str(ckpt_dir / "model.safetensors"), device=str(device)))
        loss_fn.load_state_dict(state["loss"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["torch_rng"])
        start_epoch = state["epoch"]
        print(f"resuming {out} at epoch {start_epoch}")

    test_pairs = None
    log_path = out / "log.jsonl"
    print(f"training {scfg.name} with {cfg.method} on {len(pairs)} pairs, {cfg.epochs} epochs x {steps_per_epoch} steps, "
          f"batch {cfg.batch_size}, device {device}{' (AMP ' + str(amp_dtype).split('.')[-1] + ')' if use_amp else ''}")
    for epoch in range(start_epoch, cfg.epochs):
        generator = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
        dataset.epoch = epoch
        if banks is not None:
            neighbours = mine_neighbours(banks.image, banks.text, cfg.support_size, generator)
        loader = torch.utils.data.DataLoader(
            dataset, batch_size=cfg.batch_size, shuffle=True, drop_last=True, generator=generator,
            num_workers=cfg.workers, persistent_workers=False,
            collate_fn=lambda b: (torch.stack([x[0] for x in b]), [x[1] for x in b], torch.tensor([x[2] for x in b])))
        model.train()
        epoch_start, seen, sums = time.perf_counter(), 0, {}
        for step, (pixels, captions, idx) in enumerate(progress_bar(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}")):
            pixels = pixels.to(device, non_blocking=True)
            ids = torch.from_numpy(tokenizer(captions, warn=False)).to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                z_img, z_txt = model(pixels, ids)
                z_img, z_txt = z_img.float(), z_txt.float()
                if banks is not None:
                    losses = loss_fn(z_img, z_txt, model.logit_scale,
                                     neighbour_targets(banks, neighbours.image_nn, neighbours.text_nn, idx, device))
                else:
                    losses = {"loss": loss_fn(z_img, z_txt, model.logit_scale)}
            loss = losses["loss"]
            if not torch.isfinite(loss):
                raise ClippingEdgeError(f"loss became {loss.item()} at epoch {epoch} step {step}: lower --lr "
                                        "(or disable AMP with --no-amp) and resume from the last checkpoint")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(list(model.parameters()) + list(loss_fn.parameters()), cfg.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            schedule.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(100))
            seen += len(pixels)
            for key, value in losses.items():
                sums[key] = sums.get(key, 0.0) + value.item()
        seconds = time.perf_counter() - epoch_start
        record = {"epoch": epoch + 1, **{k: round(v / (step + 1), 4) for k, v in sums.items()},
                  "samples_per_second": round(seen / seconds, 1), "seconds": round(seconds, 1),
                  "logit_scale": round(model.logit_scale.exp().item(), 2)}
        if banks is not None:
            record["mining_seconds"] = round(neighbours.seconds, 2)
        if cfg.eval_every and (epoch + 1) % cfg.eval_every == 0 and epoch + 1 < cfg.epochs:
            test_pairs = test_pairs or read_pairs(resolve_split(cfg.data, "test"))
            record.update(evaluate(model, tokenizer, test_pairs, device))
        print(" ".join(f"{k}={v}" for k, v in record.items()))
        with open(log_path, "a") as f:
            f.write(json.dumps(record) + "\n")
        trainer_state = {"epoch": epoch + 1, "loss": loss_fn.state_dict(), "optimizer": optimizer.state_dict(),
                         "schedule": schedule.state_dict(), "scaler": scaler.state_dict(), "torch_rng": torch.get_rng_state()}
        save_checkpoint(ckpt_dir, model, tokenizer_file, {"train": asdict(cfg), "epoch": epoch + 1}, trainer_state)

    test_pairs = test_pairs or read_pairs(resolve_split(cfg.data, "test"))
    metrics = evaluate(model, tokenizer, test_pairs, device)
    print(f"held-out: {format_metrics(metrics)}")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return ckpt_dir
