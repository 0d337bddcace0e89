"""Nearest-neighbour mining over the feature banks, once per epoch, before any training step.

For pair i the support set S is a random subset of bank rows. The image NN is
j = argmax_{j in S, j != i} <B_I[i], B_I[j]>; the text NN is k likewise over B_T. The cross
neighbours follow the pairing: the image's XNN is caption j (B_T[j]), the caption's is image k (B_I[k]).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Neighbours:
    image_nn: torch.Tensor  # (N,) long: j for every pair
    text_nn: torch.Tensor  # (N,) long: k for every pair
    seconds: float


def draw_support(n: int, size: int, generator: torch.Generator) -> torch.Tensor:
    return torch.randperm(n, generator=generator)[:min(n, size)].sort().values


@torch.no_grad()
def nearest_in_support(bank: np.ndarray | torch.Tensor, support: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """For every row i of `bank`, the index of its most similar row among `support`, never i itself."""
    feats = bank.float() if isinstance(bank, torch.Tensor) else torch.from_numpy(np.array(bank, dtype=np.float32))
    keys = feats[support]
    out = torch.empty(len(feats), dtype=torch.long)
    for start in range(0, len(feats), chunk):
        queries = feats[start:start + chunk]
        sims = queries @ keys.T
        rows = torch.arange(start, start + len(queries))
        # Exclude self: where a support member is the query row itself.
        sims[rows.unsqueeze(1) == support.unsqueeze(0)] = float("-inf")
        out[start:start + len(queries)] = support[sims.argmax(dim=1)]
    return out


def mine_neighbours(image_bank: np.ndarray, text_bank: np.ndarray, support_size: int, generator: torch.Generator) -> Neighbours:
    if len(image_bank) < 2:
        raise ValueError("neighbour mining needs at least two pairs")
    start = time.perf_counter()
    support = draw_support(len(image_bank), support_size, generator)
    if len(support) == 1:  # the only candidate may be the query itself; widen to everything
        support = torch.arange(len(image_bank))
    image_nn = nearest_in_support(image_bank, support)
    text_nn = nearest_in_support(text_bank, support)
    return Neighbours(image_nn, text_nn, time.perf_counter() - start)
