"""The training loop: CLIP, CLIP-PING or A-CLIP-PING, with the basic or the improved recipe, on CPU or
CUDA (AMP, channels-last, torch.compile), in one process or many under torchrun (DistributedDataParallel;
contrastive losses over the global batch), with exact gradient accumulation, atomic checkpoints and
--resume (also with another number of processes).

    torchrun --nproc_per_node 2 -m clipping_edge.training --data synthetic --method clip-ping --out runs/ddp
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from clipping_edge.atomic import atomic_file, claim_directory, output_kind, write_bytes_atomic, write_json_atomic
from clipping_edge.errors import ClippingEdgeError
from clipping_edge.tokenizer import TextTokenizer

from .anchors import (ANCHOR_CAPTIONS_PER_CLASS, WithAnchors, efficientnet_head_weight, fixed_captions, imagenet_anchors,
                      prompt_ensembles)
from .banks import FeatureBanks, build_banks
from .checkpoint import TOKENIZER, TRAINER_STATE, load_student, save_checkpoint
from .config import TrainConfig, student_config
from .data.augment import MultiViewDataset, collate_views, make_recipe
from .data.pairs import PairSet, read_pairs, resolve_split
from .data.transforms import worker_context
from .distributed import Distributed, GlobalBatchSampler
from .evaluate import evaluate, format_metrics
from .guidance import NeighbourGuide
from .locking import (fully_locked, image_tower_as_teacher, lock_tower, no_image_teacher, no_text_teacher,
                      project_cached, text_tower_as_teacher)
from .losses import MAX_LOGIT_SCALE, ClipObjective, ClipPingObjective, Embeddings, NeighbourHeads, NeighbourTargets
from .models import Student
from .progress import progress_bar
from .resume import TrainingState
from .run_setup import (Amp, cosine_with_warmup, curve_sources, param_groups, pick_device, seed_everything, uses_locked_cache,
                        validate_config)
from .teachers import ImageTeacher, TextTeacher, load_image_teacher, load_text_teacher
from .tokenizer_build import train_tokenizer
from .tokenizer_packaged import packaged_tokenizer


class TrainingModel(nn.Module):
    """The student plus the training-only neighbour heads: what DistributedDataParallel wraps. Modules
    of locked towers stay in eval mode (frozen batch-norm statistics, no dropout)."""

    def __init__(self, student: Student, heads: NeighbourHeads | None, frozen: list[nn.Module] | None = None):
        super().__init__()
        self.student = student
        self.heads = heads
        self.frozen = frozen or []

    def train(self, mode: bool = True) -> "TrainingModel":
        super().train(mode)
        for module in self.frozen:
            module.eval()
        return self

    def forward(self, pixels: torch.Tensor, ids: torch.Tensor, image_views: int, text_views: int,
                image_features: torch.Tensor | None = None, text_features: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Cached features of a locked tower, when given, replace its pixels or ids (see training/locking.py)."""
        visual, text = self.student.visual, self.student.text
        z_img = (project_cached(visual, image_features) if image_features is not None else visual(pixels))
        z_txt = (project_cached(text, text_features) if text_features is not None else text(ids))
        z_img = z_img.float().unflatten(0, (image_views, -1))
        z_txt = z_txt.float().unflatten(0, (text_views, -1))
        out = {"image": z_img, "text": z_txt, "logit_scale": self.student.logit_scale}
        return out | (self.heads(z_img, z_txt) if self.heads is not None else {})


def as_embeddings(out: dict[str, torch.Tensor]) -> Embeddings:
    projected = {k: v for k, v in out.items() if k not in ("image", "text", "logit_scale")}
    return Embeddings(out["image"], out["text"], out["logit_scale"], projected or None)


def splice(cache: Embeddings, part: Embeddings, start: int, end: int, scale_grad: bool) -> Embeddings:
    """The cached batch with rows [start, end) replaced by `part` (which carries gradients). The logit
    scale enters every micro-batch's loss whole, so only one of them may carry its gradient."""
    def put(full: torch.Tensor, fresh: torch.Tensor) -> torch.Tensor:
        return torch.cat([full[:, :start], fresh, full[:, end:]], dim=1)

    projected = {k: put(v, part.projected[k]) for k, v in cache.projected.items()} if cache.projected else None
    scale = part.logit_scale if scale_grad else part.logit_scale.detach()
    return Embeddings(put(cache.image, part.image), put(cache.text, part.text), scale, projected)


def scale_gradient(t: torch.Tensor, factor: float) -> torch.Tensor:
    """The same value, with the gradient that flows back through it multiplied by `factor`."""
    return t * factor + (t * (1 - factor)).detach()


class Trainer:
    def __init__(self, cfg: TrainConfig):
        validate_config(cfg)
        self.cfg = cfg
        seed_everything(cfg.seed, cfg.deterministic)
        self.device = pick_device(cfg.device, local_rank=int(os.environ.get("LOCAL_RANK", "0")))
        self.dist = Distributed.from_environment(self.device.type)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        self.out, self.ckpt_dir = Path(cfg.out), Path(cfg.out) / "checkpoint"
        if not cfg.resume and (self.ckpt_dir / TRAINER_STATE).exists():
            raise ClippingEdgeError(f"{self.out} already holds a training run: pass --resume to continue it, or a new --out")
        # Only a folder marked as our run (or an empty one) is written into: a user's folder that merely holds
        # files of the same names (log.jsonl, metrics.json, tokenizer.json) is refused without --force.
        # A run written before runs were marked is known by its marked checkpoint.
        earlier_run = cfg.resume and output_kind(self.ckpt_dir) == "checkpoint"
        if self.dist.is_main:  # the other ranks wait: checking meanwhile, they could catch its marker half-written
            claim_directory(self.out, "run", inputs=[*cfg.data.split("+")], force=cfg.force or earlier_run)
        self.dist.barrier()

        self.pairs = read_pairs(resolve_split(cfg.data, "train"), limit=cfg.limit)
        inherited = self._inherited_student() if cfg.student_from else None
        self.scfg = inherited.config if inherited is not None else student_config(cfg.student)
        self.tokenizer = self._tokenizer()
        self.scfg.text.vocab_size, self.scfg.text.eot_id = self.tokenizer.vocab_size, self.tokenizer.eot_id
        self.anchor_captions: list[list[str]] = []
        if cfg.anchors:
            self._check_anchors()
            self.anchor_features, self.anchor_captions = imagenet_anchors(
                efficientnet_head_weight(self.scfg.vision.variant), one_hot=self.scfg.vision.head_temperature > 0)
        self.trained_token_ids = self._trained_token_ids()
        student = inherited if inherited is not None else Student(self.scfg)
        if cfg.logit_scale:
            student.logit_scale.data.fill_(math.log(cfg.logit_scale))
            student.logit_scale.requires_grad_(False)
        frozen = self._lock(student)
        self.banks, teachers = self._banks()
        if self.banks is not None and self.anchor_captions:
            self.banks = self._banks_with_anchors(self.banks)
        heads = None
        if self.banks is not None:
            # Seeded on their own: building the banks (or finding them cached) must not change the init.
            with torch.random.fork_rng():
                torch.manual_seed(cfg.seed + 1)
                heads = NeighbourHeads(self.scfg.embed_dim, self.banks.image.shape[1], self.banks.text.shape[1])
        self.model = TrainingModel(student, heads, frozen).to(self.device)
        if self.device.type == "cuda" and cfg.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.guide = NeighbourGuide(cfg, self.banks, self.device, teachers) if self.banks is not None else None
        self.recipe = make_recipe(cfg.recipe, self.scfg.vision.image_size, cfg.image_views, cfg.text_views,
                                  cfg.label_smoothing, cfg.hue, cfg.flip)
        self.objective = (ClipPingObjective(cfg.lambda_nn, cfg.lambda_xnn, cfg.nce_temperature, self.recipe.label_smoothing)
                          if self.banks is not None else ClipObjective(self.recipe.label_smoothing))
        self.locked_cache = self._locked_cache(student)
        # Pixels are decoded only if something still looks at them.
        self.dataset = MultiViewDataset(self.pairs.pairs, self.recipe, cfg.seed,
                                        load_images=not (self.locked_cache and self.locked_cache[0] is not None))
        if self.anchor_captions:
            self._add_anchors(student)
        self.sampler = GlobalBatchSampler(len(self.dataset), cfg.batch_size, self.dist.rank, self.dist.world, cfg.seed)
        self.steps_per_epoch = len(self.sampler)
        if self.steps_per_epoch == 0:
            raise ClippingEdgeError(f"{len(self.dataset)} training pairs is fewer than one global batch of "
                                    f"{cfg.batch_size} x {self.dist.world} process(es): lower --batch-size")
        optimizer = torch.optim.AdamW(param_groups([self.model], cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6)
        self.amp = Amp.for_device(self.device, cfg.amp)
        self.state = TrainingState(self.model, optimizer,
                                   torch.amp.GradScaler("cuda", enabled=self.amp.enabled and self.amp.dtype == torch.float16))
        if cfg.resume:
            self.state.restore(self.ckpt_dir, self.device, cfg.epochs)
            self._log(f"resuming {self.out} at epoch {self.state.epoch}")
            self._truncate_log()
        wrapped: nn.Module = self.model
        if self.dist.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            wrapped = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        self.forward = torch.compile(wrapped) if cfg.compile else wrapped
        self.wrapped = wrapped

    # --- setup ----------------------------------------------------------------------------------

    def _log(self, message: str) -> None:
        if self.dist.is_main:
            print(message, flush=True)

    def _truncate_log(self) -> None:
        """Drop log lines of epochs after the checkpoint (a run killed between logging an epoch and saving
        it repeats that epoch, and the log must say so only once) and a line torn by a crash."""
        log = self.out / "log.jsonl"
        if self.dist.is_main and log.is_file():
            kept = []
            for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict) and isinstance(record.get("epoch"), int) and record["epoch"] <= self.state.epoch:
                    kept.append(line)
            write_bytes_atomic(log, "".join(line + "\n" for line in kept).encode())

    def _tokenizer(self) -> TextTokenizer:
        """A new run writes the packaged open vocabulary, or trains a BPE tokenizer on its captions (rank 0);
        a resumed run keeps its own."""
        path, saved = self.out / TOKENIZER, self.ckpt_dir / TOKENIZER
        if self.dist.is_main:
            with atomic_file(path) as tmp:  # a full disk leaves no half-written tokenizer.json behind
                if self.cfg.resume and saved.is_file():
                    shutil.copyfile(saved, tmp)
                elif self.cfg.student_from:  # the imported model's own (CLIP's BPE)
                    shutil.copyfile(self.inherited_tokenizer, tmp)
                elif self.cfg.tokenizer == "captions":
                    train_tokenizer(self.pairs.captions, self.scfg.text.vocab_size, self.scfg.text.context_length, tmp)
                else:
                    packaged_tokenizer(self.cfg.tokenizer, self.scfg.text.context_length, tmp)
        self.dist.barrier()
        return TextTokenizer(path, self.scfg.text.context_length)

    def _trained_token_ids(self) -> list[int] | None:
        """The token ids the text tower learns from (None: all, for a pretrained text tower). Recorded with
        the weights, so a label spelled with pieces the tower never saw can be flagged at classification."""
        if (self.scfg.text.kind == "minilm" and self.scfg.text.pretrained) or self.scfg.text.kind == "open_clip":
            return None
        seen: set[int] = set()
        captions = self.pairs.captions + [c for choices in self.anchor_captions for c in choices]
        for i in range(0, len(captions), 4096):
            seen.update(np.unique(self.tokenizer(captions[i:i + 4096], warn=False)).tolist())
        return sorted(seen)

    def _inherited_student(self) -> Student:
        """--student-from: an imported CLIP-family model with only the kept blocks (weight inheritance)."""
        from .clip_import import imported_checkpoint, inherit_blocks, is_spec

        folder = imported_checkpoint(self.cfg.student_from) if is_spec(self.cfg.student_from) else Path(self.cfg.student_from)
        full, _, _ = load_student(folder)
        if full.config.vision.kind != "open_clip":
            raise ClippingEdgeError(f"--student-from {self.cfg.student_from}: not an imported CLIP-family model: pass "
                                    "open_clip:..., hf:... or a checkpoint `clipping-edge import` wrote")
        student, kept = inherit_blocks(full, self.cfg.keep_image_blocks, self.cfg.keep_text_blocks)
        self.inherited_tokenizer = folder / TOKENIZER
        for tower, blocks in kept.items():
            self._log(f"--student-from: the {tower} tower keeps blocks {blocks} of {self.cfg.student_from}")
        return student

    def _check_anchors(self) -> None:
        cfg, vision = self.cfg, self.scfg.vision
        if cfg.anchors != "imagenet":
            raise ClippingEdgeError(f"unknown --anchors {cfg.anchors!r}: use imagenet (or leave it empty)")
        if vision.kind != "efficientnet-lite" or not vision.pretrained:
            raise ClippingEdgeError("--anchors imagenet needs a pretrained EfficientNet-Lite image tower (e.g. --student "
                                    "effnet-minilm): the anchors are rows of its ImageNet classifier head")
        if not (cfg.lock_image and cfg.unlocked_image_blocks == 0 and cfg.cache_locked and cfg.recipe == "basic"):
            raise ClippingEdgeError("--anchors imagenet needs the image tower locked whole and cached: add --lock-image "
                                    "(no unlocked image blocks, basic recipe)")
        if cfg.method == "a-clip-ping":
            raise ClippingEdgeError("--anchors imagenet works with --method clip or clip-ping: a-clip-ping's teachers "
                                    "look at each step's pixels, and anchors have none")
        if cfg.method == "clip-ping" and cfg.image_teacher != f"efficientnet-{vision.variant}":
            raise ClippingEdgeError(f"--anchors imagenet with clip-ping needs --image-teacher efficientnet-{vision.variant}: "
                                    "an anchor's image-teacher feature is that network's ImageNet head row")

    def _banks_with_anchors(self, banks: FeatureBanks) -> FeatureBanks:
        """Anchors mine neighbours and are mined like any pair, so each gets feature-bank rows after the
        pairs' (in memory; the banks on disk stay the pairs'): the image teacher, the tower's own
        EfficientNet-Lite, scores class c by its head row, so the normalised row is where that teacher puts
        c; the text teacher's row is the class's prompt ensemble over the same fixed captions as the cache."""
        image, _ = imagenet_anchors(efficientnet_head_weight(self.scfg.vision.variant))
        captions = fixed_captions(self.anchor_captions, ANCHOR_CAPTIONS_PER_CLASS, self.cfg.seed)
        text = prompt_ensembles(load_text_teacher(self.cfg.text_teacher), captions)
        return FeatureBanks(np.concatenate([banks.image, image.numpy().astype(np.float16)]),
                            np.concatenate([banks.text, text.numpy().astype(np.float16)]),
                            banks.path, {**banks.stats, "anchors": len(captions)}, banks.reused)

    def _add_anchors(self, student: Student) -> None:
        """One row per anchor class after the training pairs: its image side appended to the locked image
        cache and, for a locked text tower, its prompt ensemble (the mean of its fixed captions' features,
        as a label's prototype is built at classification) appended to the text cache."""
        (image_cache, text_cache), captions = self.locked_cache, self.anchor_captions
        if text_cache is not None:
            captions = fixed_captions(captions, ANCHOR_CAPTIONS_PER_CLASS, self.cfg.seed)
            teacher = text_tower_as_teacher(student.text.eval(), self.tokenizer)
            text_cache = torch.cat([text_cache, prompt_ensembles(teacher, captions).to(self.device)])
        self.locked_cache = (torch.cat([image_cache, self.anchor_features.to(self.device)]), text_cache)
        self.dataset = WithAnchors(self.dataset, captions, len(self.recipe.image_views), len(self.recipe.text_views))
        self._log(f"ImageNet-head anchors: {len(captions)} classes as extra pairs")

    def _lock(self, student: Student) -> list[nn.Module]:
        cfg, frozen = self.cfg, []
        if cfg.lock_image:
            frozen += lock_tower(student.visual, cfg.unlocked_image_blocks)
        if cfg.lock_text:
            frozen += lock_tower(student.text, cfg.unlocked_text_blocks)
        return frozen

    def _locked_cache(self, student: Student) -> tuple[torch.Tensor | None, torch.Tensor | None] | None:
        """Features of the fully locked towers for every training pair, from the disk cache (built once)."""
        cfg = self.cfg
        if not uses_locked_cache(cfg):
            return None
        image, text = fully_locked(asdict(cfg))
        size = self.scfg.vision.image_size
        # One cache per tower, so a tower's features are shared by every run that locks it the same way
        # (the image features of a real dataset at 224 px cost minutes; its captions' seconds).
        features = {}
        for kind, locked, teachers in (
                ("image", image, lambda: (image_tower_as_teacher(student.visual.eval(), self.scfg.vision.preprocess()),
                                          no_text_teacher())),
                ("text", text, lambda: (no_image_teacher(size), text_tower_as_teacher(student.text.eval(), self.tokenizer)))):
            if not locked:
                features[kind] = None
                continue
            start = time.perf_counter()
            cache = build_banks(self.pairs, *teachers(), workers=cfg.workers, dist=self.dist, device=self.device)
            how = "reused" if cache.reused else "copied" if cache.stats.get("image_rows_from") else "computed"
            self._log(f"locked {kind} tower features {how} in {time.perf_counter() - start:.1f}s: {cache.path}")
            features[kind] = torch.from_numpy(np.asarray(getattr(cache, kind), dtype=np.float32)).to(self.device)
        return features["image"], features["text"]

    def _banks(self) -> tuple[FeatureBanks | None, tuple[ImageTeacher, TextTeacher] | None]:
        if self.cfg.method == "clip":
            return None, None
        if self.cfg.teacher:
            from .clip_import import clip_teachers

            teachers = clip_teachers(self.cfg.teacher)
        else:
            teachers = (load_image_teacher(self.cfg.image_teacher, self.cfg.teacher_image_size),
                        load_text_teacher(self.cfg.text_teacher))
        banks = build_banks(self.pairs, *teachers, workers=self.cfg.workers, dist=self.dist, device=self.device)
        if self.dist.is_main:
            write_json_atomic(self.out / "banks.json", {"path": str(banks.path), "reused": banks.reused, **banks.stats})
        # Only A-CLIP-PING keeps its teachers: the others need nothing but the banks from here on.
        return banks, (teachers if self.cfg.method == "a-clip-ping" else None)

    # --- one step -------------------------------------------------------------------------------

    def _gather(self, emb: Embeddings, targets: NeighbourTargets | None) -> tuple[Embeddings, NeighbourTargets | None]:
        if self.dist.world == 1 or self.cfg.local_loss:
            return emb, targets
        return (emb.gather(lambda t: self.dist.gather(t, dim=1)),
                targets.map(lambda t: self.dist.gather(t, dim=0)) if targets is not None else None)

    @property
    def _global_loss(self) -> bool:
        return self.dist.world > 1 and not self.cfg.local_loss

    def _loss(self, emb: Embeddings, targets: NeighbourTargets | None) -> dict[str, torch.Tensor]:
        emb, targets = self._gather(emb, targets)
        if self._global_loss:
            # Every rank sees the whole global loss through the logit scale (not just its own rows), so its
            # gradient is cut by the world size to survive the scaling in _backward unchanged.
            emb.logit_scale = scale_gradient(emb.logit_scale, 1 / self.dist.world)
        return self.objective(emb, targets)

    def _backward(self, loss: torch.Tensor) -> None:
        # DDP averages gradients over ranks, and each rank's covers only its own rows of the global loss:
        # scaling by the world size makes the average the gradient of the global-batch loss, as on one process.
        self.state.scaler.scale(loss * (self.dist.world if self._global_loss else 1)).backward()

    def step(self, pixels: torch.Tensor, captions: list[str], idx: torch.Tensor) -> dict[str, float]:
        cfg, views, text_views = self.cfg, len(self.recipe.image_views), len(self.recipe.text_views)
        pixels = pixels.to(self.device, non_blocking=True)
        if self.device.type == "cuda" and cfg.channels_last and pixels.ndim == 4:
            pixels = pixels.contiguous(memory_format=torch.channels_last)
        ids = torch.from_numpy(self.tokenizer(captions, warn=False)).to(self.device, non_blocking=True)
        pixels, ids = pixels.unflatten(0, (views, -1)), ids.unflatten(0, (text_views, -1))
        batch = len(idx)
        autocast = torch.autocast(self.device.type, dtype=self.amp.dtype, enabled=self.amp.enabled)

        image_cache, text_cache = self.locked_cache or (None, None)
        rows_of = idx.to(self.device)

        def run(rows: slice, grad: bool) -> Embeddings:
            cached = {"image_features": image_cache[rows_of[rows]] if image_cache is not None else None,
                      "text_features": text_cache[rows_of[rows]] if text_cache is not None else None}
            with autocast, torch.set_grad_enabled(grad):
                model = self.forward if grad else self.model
                return as_embeddings(model(pixels[:, rows].flatten(0, 1), ids[:, rows].flatten(0, 1), views, text_views,
                                           **cached))

        def targets_for_batch(emb: Embeddings) -> NeighbourTargets | None:
            if self.guide is None:
                return None
            return self.guide.targets(idx, pixels[0], captions[:batch], emb.detach())

        self.state.optimizer.zero_grad(set_to_none=True)
        if cfg.accum_steps == 1:
            emb = run(slice(None), grad=True)
            with autocast:
                losses = self._loss(emb, targets_for_batch(emb))
            self._check_finite(losses["loss"])
            self._backward(losses["loss"])
        else:
            # Exact accumulation for contrastive losses (as open_clip's accum_freq): embed the whole batch
            # without gradients, then re-embed one micro-batch at a time with gradients, spliced into
            # the cached batch so every micro-batch still contrasts against all rows.
            micro = batch // cfg.accum_steps
            parts = [run(slice(m * micro, (m + 1) * micro), grad=False) for m in range(cfg.accum_steps)]
            cache = Embeddings(torch.cat([p.image for p in parts], 1), torch.cat([p.text for p in parts], 1),
                               self.model.student.logit_scale,
                               {k: torch.cat([p.projected[k] for p in parts], 1) for k in parts[0].projected}
                               if parts[0].projected else None)
            targets = targets_for_batch(cache)
            for m in range(cfg.accum_steps):
                last = m == cfg.accum_steps - 1
                sync = contextlib.nullcontext() if last or self.dist.world == 1 else self.wrapped.no_sync()
                with sync:
                    emb = splice(cache, run(slice(m * micro, (m + 1) * micro), grad=True), m * micro, (m + 1) * micro,
                                 scale_grad=last)
                    with autocast:
                        losses = self._loss(emb, targets)
                    self._check_finite(losses["loss"])
                    self._backward(losses["loss"])
        self.state.scaler.unscale_(self.state.optimizer)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.state.scaler.step(self.state.optimizer)
        self.state.scaler.update()
        with torch.no_grad():
            self.model.student.logit_scale.clamp_(0, math.log(MAX_LOGIT_SCALE))
        return {k: v.item() for k, v in losses.items()}

    def _check_finite(self, loss: torch.Tensor) -> None:
        # Every rank must stop together, or the others would wait forever at the next collective.
        if not math.isfinite(self.dist.all_reduce_mean(loss.item())):
            raise ClippingEdgeError(f"loss became {loss.item()} at epoch {self.state.epoch + 1}: lower --lr "
                                    "(or disable AMP with --no-amp) and --resume from the last checkpoint")

    # --- epochs ---------------------------------------------------------------------------------

    def epoch(self) -> dict:
        cfg, epoch = self.cfg, self.state.epoch
        self.sampler.epoch = self.dataset.epoch = epoch
        loader = torch.utils.data.DataLoader(self.dataset, batch_sampler=self.sampler, num_workers=cfg.workers,
                                             collate_fn=collate_views, multiprocessing_context=worker_context(cfg.workers),
                                             pin_memory=self.device.type == "cuda")
        total = self.steps_per_epoch * cfg.epochs
        self.model.train()
        if self.guide is not None:
            self.guide.mining_seconds = 0.0
        start, seen, sums, steps = time.perf_counter(), 0, {}, 0
        bar = progress_bar(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not self.dist.is_main)
        for step, (pixels, captions, idx) in enumerate(bar):
            if self.guide is not None:
                self.guide.refresh(epoch, step)
            global_step = epoch * self.steps_per_epoch + step
            for group in self.state.optimizer.param_groups:
                group["lr"] = cfg.lr * cosine_with_warmup(global_step, cfg.warmup_steps, total)
            for key, value in self.step(pixels, captions, idx).items():
                sums[key] = sums.get(key, 0.0) + value
            seen, steps = seen + len(idx), steps + 1
        seconds = time.perf_counter() - start
        record = {"epoch": epoch + 1, **{k: round(self.dist.all_reduce_mean(v / steps), 4) for k, v in sums.items()},
                  "samples_per_second": round(seen * self.dist.world / seconds, 1), "seconds": round(seconds, 1),
                  "logit_scale": round(self.model.student.logit_scale.exp().item(), 2)}
        if self.guide is not None:
            record["mining_seconds"] = round(self.guide.mining_seconds, 2)
            if self.guide.mining_method:
                record["mining"] = self.guide.mining_method
        return record

    def save(self) -> None:
        if self.dist.is_main:
            meta = {"train": asdict(self.cfg), "epoch": self.state.epoch, "world_size": self.dist.world,
                    "trained_token_ids": self.trained_token_ids}
            save_checkpoint(self.ckpt_dir, self.model.student, self.out / TOKENIZER, meta, self.state.state_dict())
        self.dist.barrier()

    def evaluate(self, split_pairs=None) -> dict[str, float]:
        pairs = split_pairs or read_pairs(resolve_split(self.cfg.data, "test"))
        return evaluate(self.model.student, self.tokenizer, pairs, self.device, fully_locked(asdict(self.cfg)))

    def _curve_sets(self) -> dict[str, PairSet]:
        return {prefix: read_pairs(source, limit=self.cfg.eval_limit) for prefix, source in curve_sources(self.cfg).items()}

    def fit(self) -> Path:
        cfg = self.cfg
        amp = f", autocast {str(self.amp.dtype)[6:]}" if self.amp.enabled else ""
        self._log(f"training {self.scfg.name} with {cfg.method} ({cfg.recipe} recipe) on {len(self.pairs)} pairs, "
                  f"{cfg.epochs} epochs x {self.steps_per_epoch} steps, batch {cfg.batch_size} x {self.dist.world} "
                  f"process(es), device {self.device}{amp}")
        # Read before the first epoch, so a wrong --eval-data (or a broken test split or zeroshot.json) is one
        # error line now, not after the training it would end.
        curve_sets = self._curve_sets() if self.dist.is_main and cfg.eval_every else {}
        test_pairs = read_pairs(resolve_split(cfg.data, "test")) if self.dist.is_main else None
        while self.state.epoch < cfg.epochs:
            record = self.epoch()
            self.state.epoch += 1
            if curve_sets and self.state.epoch % cfg.eval_every == 0:
                for prefix, pairs in curve_sets.items():
                    record.update({f"{prefix}{k}": round(v, 4) for k, v in self.evaluate(pairs).items()})
            self._log(" ".join(f"{k}={v}" for k, v in record.items()))
            if self.dist.is_main:
                with open(self.out / "log.jsonl", "a") as f:
                    f.write(json.dumps(record) + "\n")
            self.save()
        if self.dist.is_main:
            metrics = self.evaluate(test_pairs)
            print(f"held-out: {format_metrics(metrics)}")
            write_json_atomic(self.out / "metrics.json", metrics)
        self.dist.barrier()
        return self.ckpt_dir


def train(cfg: TrainConfig) -> Path:
    """Train a student; returns the checkpoint directory (`<out>/checkpoint`)."""
    return Trainer(cfg).fit()
