"""CLIP and CLIP-PING objectives as modules with one `forward` each.

    L = CLIP(z_I, z_T)
      + lambda_nn  * [NCE(g_II z_I, B_I[j]) + NCE(g_TT z_T, B_T[k])]
      + lambda_xnn * [NCE(g_IT z_I, B_T[j]) + NCE(g_TI z_T, B_I[k])]

j / k are each pair's image / text nearest neighbours in the banks; the heads g map the student
embedding into a teacher space and are dropped at export. With several augmented views (the improved
recipe) CLIP is averaged over every (image view, text view) pair, label-smoothed on the pairs that
involve an augmented view, and the neighbour terms are averaged over the views of each modality.

Every objective takes `Embeddings` of the whole (global) batch: under torch.distributed the trainer
gathers them from all ranks first, so in-batch negatives span the global batch.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

MAX_LOGIT_SCALE = 100.0


class ClipLoss(nn.Module):
    """Symmetric InfoNCE over the batch with CLIP's learnable temperature."""

    def forward(self, z_img: torch.Tensor, z_txt: torch.Tensor, logit_scale: torch.Tensor,
                label_smoothing: float = 0.0) -> torch.Tensor:
        scale = logit_scale.exp().clamp(max=MAX_LOGIT_SCALE)
        logits = scale * z_img @ z_txt.T
        labels = torch.arange(len(logits), device=logits.device)
        return (F.cross_entropy(logits, labels, label_smoothing=label_smoothing)
                + F.cross_entropy(logits.T, labels, label_smoothing=label_smoothing)) / 2


class NeighbourNCE(nn.Module):
    """InfoNCE from predictions to target features with in-batch negatives at a fixed temperature.

    Two rows whose targets are the same bank row (two pairs sharing a neighbour) are not each other's
    negatives: those columns are masked, or the loss would push apart identical targets.
    """

    def __init__(self, temperature: float = 0.1):
        super().__init__()
        self.temperature = temperature

    def forward(self, prediction: torch.Tensor, target: torch.Tensor, target_ids: torch.Tensor) -> torch.Tensor:
        logits = F.normalize(prediction, dim=-1) @ F.normalize(target, dim=-1).T / self.temperature
        same = target_ids.unsqueeze(0) == target_ids.unsqueeze(1)
        same.fill_diagonal_(False)
        logits = logits.masked_fill(same, float("-inf"))
        return F.cross_entropy(logits, torch.arange(len(logits), device=logits.device))


HEADS = ("image_to_image", "image_to_text", "text_to_text", "text_to_image")  # g_II, g_IT, g_TT, g_TI


class NeighbourHeads(nn.Module):
    """Training-only linear heads from the student embedding into the teacher spaces."""

    def __init__(self, embed_dim: int, image_teacher_dim: int, text_teacher_dim: int):
        super().__init__()
        self.image_to_image = nn.Linear(embed_dim, image_teacher_dim)
        self.image_to_text = nn.Linear(embed_dim, text_teacher_dim)
        self.text_to_text = nn.Linear(embed_dim, text_teacher_dim)
        self.text_to_image = nn.Linear(embed_dim, image_teacher_dim)

    def forward(self, z_img: torch.Tensor, z_txt: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"image_to_image": self.image_to_image(z_img), "image_to_text": self.image_to_text(z_img),
                "text_to_text": self.text_to_text(z_txt), "text_to_image": self.text_to_image(z_txt)}


@dataclass
class Embeddings:
    """One batch through the student, views stacked first: image (V, B, d), text (T, B, d); the heads'
    projections (V or T, B, D_teacher) when training with neighbours."""

    image: torch.Tensor
    text: torch.Tensor
    logit_scale: torch.Tensor
    projected: dict[str, torch.Tensor] | None = None

    def gather(self, gather_batch: Callable[[torch.Tensor], torch.Tensor]) -> "Embeddings":
        """Every tensor with its batch axis (dim 1) gathered, e.g. across ranks."""
        projected = {k: gather_batch(v) for k, v in self.projected.items()} if self.projected else None
        return replace(self, image=gather_batch(self.image), text=gather_batch(self.text), projected=projected)

    def detach(self) -> "Embeddings":
        projected = {k: v.detach() for k, v in self.projected.items()} if self.projected else None
        return replace(self, image=self.image.detach(), text=self.text.detach(), projected=projected)


@dataclass
class NeighbourTargets:
    """Bank rows for one batch: per modality, the NN target and the XNN target of each pair, with the
    bank row ids (pairs sharing a target are not each other's negatives)."""

    image_nn: torch.Tensor  # (B, D_img) B_I[j]
    image_nn_ids: torch.Tensor  # (B,) j
    image_xnn: torch.Tensor  # (B, D_txt) B_T[j] (pairing XNN)
    image_xnn_ids: torch.Tensor
    text_nn: torch.Tensor  # (B, D_txt) B_T[k]
    text_nn_ids: torch.Tensor  # (B,) k
    text_xnn: torch.Tensor  # (B, D_img) B_I[k]
    text_xnn_ids: torch.Tensor

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> "NeighbourTargets":
        return NeighbourTargets(**{f.name: fn(getattr(self, f.name)) for f in fields(self)})


class ClipObjective(nn.Module):
    """CLIP averaged over every (image view, text view) pair; view 0 of each modality is the plain one,
    and pairs involving an augmented view are label-smoothed."""

    def __init__(self, label_smoothing: float = 0.0):
        super().__init__()
        self.label_smoothing = label_smoothing
        self.clip = ClipLoss()

    def clip_term(self, emb: Embeddings) -> torch.Tensor:
        terms = [self.clip(zi, zt, emb.logit_scale, 0.0 if (a, b) == (0, 0) else self.label_smoothing)
                 for a, zi in enumerate(emb.image) for b, zt in enumerate(emb.text)]
        return torch.stack(terms).mean()

    def forward(self, emb: Embeddings, targets: NeighbourTargets | None = None) -> dict[str, torch.Tensor]:
        clip = self.clip_term(emb)
        return {"loss": clip, "clip": clip.detach()}


class ClipPingObjective(ClipObjective):
    def __init__(self, lambda_nn: float = 1.0, lambda_xnn: float = 1.0, temperature: float = 0.1,
                 label_smoothing: float = 0.0):
        super().__init__(label_smoothing)
        self.lambda_nn = lambda_nn
        self.lambda_xnn = lambda_xnn
        self.nce = NeighbourNCE(temperature)

    def forward(self, emb: Embeddings, targets: NeighbourTargets | None = None) -> dict[str, torch.Tensor]:
        if targets is None or emb.projected is None:
            raise ValueError("CLIP-PING needs the heads' projections and the neighbour targets")
        p, t = emb.projected, targets

        def per_view(name: str, target: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
            return torch.stack([self.nce(view, target, ids) for view in p[name]]).mean()

        nn_loss = per_view("image_to_image", t.image_nn, t.image_nn_ids) + per_view("text_to_text", t.text_nn, t.text_nn_ids)
        xnn_loss = (per_view("image_to_text", t.image_xnn, t.image_xnn_ids)
                    + per_view("text_to_image", t.text_xnn, t.text_xnn_ids))
        clip = self.clip_term(emb)
        total = clip + self.lambda_nn * nn_loss + self.lambda_xnn * xnn_loss
        return {"loss": total, "clip": clip.detach(), "nn": nn_loss.detach(), "xnn": xnn_loss.detach()}
