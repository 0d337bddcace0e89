"""The two exported graphs, per DESIGN.md's contract.

image: (B, 3, H, W) float32 RGB in [0, 1] -> (B, d) L2-normalised (mean/std inside)
text:  (B, L) int32 token ids              -> (B, d) L2-normalised (pooled at the EOT position)

The student's towers already honour this; the wrappers pin the input dtype, give the example inputs
each converter traces with, and export re-parameterizable image towers (MobileOne, FastViT) in their
fused inference form.
"""

from __future__ import annotations

import torch
from torch import nn

from clipping_edge.training.models import Student

IMAGE_INPUT, TEXT_INPUT, OUTPUT = "pixels", "input_ids", "embeddings"


class ImageTower(nn.Module):
    def __init__(self, student: Student):
        super().__init__()
        self.visual = student.visual.fused()
        self.image_size = student.config.vision.image_size

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.visual(pixels)

    def example(self, batch: int = 2) -> torch.Tensor:
        return torch.rand(batch, 3, self.image_size, self.image_size)

    def refusal(self, sixteen_bit: bool) -> str | None:
        """Why this tower cannot be exported at a precision, found before any converting (None: it can)."""
        top_k = getattr(self.visual, "head_top_k", 0)
        if sixteen_bit and top_k:
            # Measured on the demo's student: 16-bit weights alone change the top-5 set of 6 % of the images.
            return (f"it keeps only its {top_k} likeliest ImageNet classes, a cut that 16-bit weights or arithmetic move "
                    "for some images (worst image cosine 0.64-0.85 against the gate): export it at fp32 or an int8 "
                    "precision (or --quantize auto), or train a student without head_top_k")
        return None


class TextTower(nn.Module):
    def __init__(self, student: Student):
        super().__init__()
        self.text = student.text
        self.context_length = student.config.text.context_length
        self.eot_id = student.config.text.eot_id
        self.vocab_size = student.config.text.vocab_size

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.text(input_ids)

    def example(self, batch: int = 2) -> torch.Tensor:
        ids = torch.randint(3, self.vocab_size, (batch, self.context_length), dtype=torch.int32)
        ids[:, self.context_length // 2] = self.eot_id
        return ids
