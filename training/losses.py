"""CLIP and CLIP-PING losses as modules with one `forward` each.

    L = CLIP(z_I, z_T)
      + lambda_nn  * [NCE(g_II z_I, B_I[j]) + NCE(g_TT z_T, B_T[k])]
      + lambda_xnn * [NCE(g_IT z_I, B_T[j]) + NCE(g_TI z_T, B_I[k])]

j / k are each pair's image / text nearest neighbours in the banks; the heads g map the student
embedding into a teacher space and are dropped at export.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

MAX_LOGIT_SCALE = 100.0


class ClipLoss(nn.Module):
    """Symmetric InfoNCE over the batch with CLIP's learnable temperature."""

    def forward(self, z_img: torch.Tensor, z_txt: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
        scale = logit_scale.exp().clamp(max=MAX_LOGIT_SCALE)
        logits = scale * z_img @ z_txt.T
        labels = torch.arange(len(logits), device=logits.device)
        return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


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


@dataclass
class NeighbourTargets:
    """Bank rows for one batch: the image NN j and text NN k of each pair, and their features."""

    image_nn: torch.Tensor  # (B,) j
    text_nn: torch.Tensor  # (B,) k
    image_of_image_nn: torch.Tensor  # B_I[j]  (NN target of the image)
    text_of_image_nn: torch.Tensor  # B_T[j]  (XNN target of the image)
    text_of_text_nn: torch.Tensor  # B_T[k]  (NN target of the caption)
    image_of_text_nn: torch.Tensor  # B_I[k]  (XNN target of the caption)


class ClipPingLoss(nn.Module):
    def __init__(self, embed_dim: int, image_teacher_dim: int, text_teacher_dim: int, lambda_nn: float = 1.0,
                 lambda_xnn: float = 1.0, temperature: float = 0.1):
        super().__init__()
        self.lambda_nn = lambda_nn
        self.lambda_xnn = lambda_xnn
        self.clip = ClipLoss()
        self.nce = NeighbourNCE(temperature)
        # Training-only projection heads into the teacher spaces: g_II, g_IT, g_TT, g_TI.
        self.image_to_image = nn.Linear(embed_dim, image_teacher_dim)
        self.image_to_text = nn.Linear(embed_dim, text_teacher_dim)
        self.text_to_text = nn.Linear(embed_dim, text_teacher_dim)
        self.text_to_image = nn.Linear(embed_dim, image_teacher_dim)

    def forward(self, z_img: torch.Tensor, z_txt: torch.Tensor, logit_scale: torch.Tensor,
                targets: NeighbourTargets) -> dict[str, torch.Tensor]:
        clip = self.clip(z_img, z_txt, logit_scale)
        nn_loss = (self.nce(self.image_to_image(z_img), targets.image_of_image_nn, targets.image_nn)
                   + self.nce(self.text_to_text(z_txt), targets.text_of_text_nn, targets.text_nn))
        xnn_loss = (self.nce(self.image_to_text(z_img), targets.text_of_image_nn, targets.image_nn)
                    + self.nce(self.text_to_image(z_txt), targets.image_of_text_nn, targets.text_nn))
        total = clip + self.lambda_nn * nn_loss + self.lambda_xnn * xnn_loss
        return {"loss": total, "clip": clip.detach(), "nn": nn_loss.detach(), "xnn": xnn_loss.detach()}
