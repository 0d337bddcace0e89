"""Nearest-neighbour mining over the feature banks.

For pair i the support set S is a random subset of bank rows. The image NN is
j = argmax_{j in S, j != i} <B_I[i], B_I[j]>; the text NN is k likewise over B_T (with k > 1
neighbours, one of the top k is drawn at each step). The cross neighbours follow the pairing by
default: the image's XNN is caption j (B_T[j]), the caption's is image k (B_I[k]); `xnn="swap"`
takes the other modality's neighbour instead (image -> B_T[k], caption -> B_I[j]).

CLIP-PING mines with the teachers' bank features as queries once per epoch (or every
`refresh` steps), before the steps that use them: exact chunked matmuls, or a usearch HNSW index
for large banks. A-CLIP-PING, and the "student" query, search the support set at every step with
online queries (`SupportSet.search`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from .losses import NeighbourTargets

XNN_MODES = ("pairing", "swap")
MINING_METHODS = ("auto", "exact", "usearch")
USEARCH_ABOVE = 200_000  # "auto" switches from exact matmuls to usearch above this many support rows


@dataclass
class Neighbours:
    image_nn: torch.Tensor  # (N, k) long: the k image neighbours j of every pair, best first
    text_nn: torch.Tensor  # (N, k) long: the k text neighbours
    seconds: float
    method: str


def draw_support(n: int, size: int, generator: torch.Generator) -> torch.Tensor:
    support = torch.randperm(n, generator=generator)[:min(n, size)].sort().values
    return support if len(support) > 1 else torch.arange(n)  # one candidate may be the query itself


def as_float_tensor(bank: np.ndarray | torch.Tensor) -> torch.Tensor:
    return bank.float() if isinstance(bank, torch.Tensor) else torch.from_numpy(np.array(bank, dtype=np.float32))


@torch.no_grad()
def top_k_exact(queries: torch.Tensor, keys: torch.Tensor, key_ids: torch.Tensor, query_ids: torch.Tensor, k: int = 1,
                chunk: int = 4096) -> torch.Tensor:
    """(Q, k) ids of the most similar keys of each query, never the query's own id. `key_ids` is sorted
    (support sets are), so each query finds its own column by binary search, not a (Q, K) comparison."""
    k = min(k, len(keys) - 1) if len(keys) > 1 else 1
    out = torch.empty(len(queries), k, dtype=torch.long, device=queries.device)
    for start in range(0, len(queries), chunk):
        sims = queries[start:start + chunk] @ keys.T
        ids = query_ids[start:start + chunk]
        column = torch.searchsorted(key_ids, ids).clamp(max=len(key_ids) - 1)
        own = key_ids[column] == ids
        sims[torch.arange(len(ids), device=sims.device)[own], column[own]] = float("-inf")
        out[start:start + chunk] = key_ids[sims.topk(k, dim=1).indices]
    return out


def nearest_in_support(bank: np.ndarray | torch.Tensor, support: torch.Tensor, k: int = 1, chunk: int = 4096) -> torch.Tensor:
    """For every row i of `bank`, its k most similar rows among `support`, never i itself: (N, k)."""
    feats = as_float_tensor(bank)
    return top_k_exact(feats, feats[support], support, torch.arange(len(feats)), k, chunk)


def nearest_with_usearch(bank: np.ndarray, support: torch.Tensor, k: int = 1) -> torch.Tensor:
    """The same through a usearch HNSW index of the support rows (approximate; for banks of millions).
    Searches k + 1 so that dropping the query itself still leaves k."""
    from usearch.index import Index

    feats = np.asarray(bank, dtype=np.float32)
    ids = support.numpy().astype(np.uint64) + 1  # usearch reports missing results as key 0
    index = Index(ndim=feats.shape[1], metric="ip", dtype="f16")
    index.add(ids, feats[support.numpy()])
    found = index.search(feats, k + 1)
    keys = found.keys.astype(np.int64) - 1
    out = np.empty((len(feats), k), dtype=np.int64)
    for i, row in enumerate(keys):
        valid = row[(row >= 0) & (row != i)][:k]
        out[i] = np.pad(valid, (0, k - len(valid)), mode="edge") if len(valid) else support[0].item()
    return torch.from_numpy(out)


def mine_neighbours(image_bank: np.ndarray, text_bank: np.ndarray, support_size: int, generator: torch.Generator,
                    k: int = 1, method: str = "auto") -> Neighbours:
    if len(image_bank) < 2:
        raise ValueError("neighbour mining needs at least two pairs")
    if method not in MINING_METHODS:
        raise ValueError(f"unknown mining method {method!r}: choose one of {', '.join(MINING_METHODS)}")
    start = time.perf_counter()
    support = draw_support(len(image_bank), support_size, generator)
    if method == "auto":
        method = "usearch" if len(support) > USEARCH_ABOVE else "exact"
    search = nearest_with_usearch if method == "usearch" else nearest_in_support
    image_nn, text_nn = search(image_bank, support, k), search(text_bank, support, k)
    return Neighbours(image_nn, text_nn, time.perf_counter() - start, method)


def targets_for(image_bank: np.ndarray | torch.Tensor, text_bank: np.ndarray | torch.Tensor, j: torch.Tensor,
                k: torch.Tensor, device: torch.device, xnn: str = "pairing") -> NeighbourTargets:
    """The bank rows one batch is pulled towards, given each pair's image NN j and text NN k."""
    if xnn not in XNN_MODES:
        raise ValueError(f"unknown XNN definition {xnn!r}: choose one of {', '.join(XNN_MODES)}")

    def rows(bank: np.ndarray | torch.Tensor, which: torch.Tensor) -> torch.Tensor:
        if isinstance(bank, torch.Tensor):
            return bank[which.to(bank.device)].float().to(device)
        return torch.from_numpy(np.asarray(bank[which.cpu().numpy()], dtype=np.float32)).to(device, non_blocking=True)

    image_xnn_id, text_xnn_id = (j, k) if xnn == "pairing" else (k, j)
    j, k, image_xnn_id, text_xnn_id = (t.to(device) for t in (j, k, image_xnn_id, text_xnn_id))
    return NeighbourTargets(rows(image_bank, j), j, rows(text_bank, image_xnn_id), image_xnn_id,
                            rows(text_bank, k), k, rows(image_bank, text_xnn_id), text_xnn_id)


class SupportSet:
    """Support-set rows of both banks on the training device, searched at every step with online
    queries (A-CLIP-PING's teacher features of the augmented views, or the projected student)."""

    def __init__(self, image_bank: np.ndarray, text_bank: np.ndarray, support: torch.Tensor, device: torch.device):
        self.ids = support.to(device)
        self.image = torch.from_numpy(np.asarray(image_bank[support.numpy()], dtype=np.float32)).to(device)
        self.text = torch.from_numpy(np.asarray(text_bank[support.numpy()], dtype=np.float32)).to(device)

    @torch.no_grad()
    def search(self, image_queries: torch.Tensor, text_queries: torch.Tensor, pair_ids: torch.Tensor,
               k: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, k) image and text neighbours of each pair, never the pair itself."""
        norm = torch.nn.functional.normalize
        pair_ids = pair_ids.to(self.ids.device)
        return (top_k_exact(norm(image_queries.float(), dim=-1), self.image, self.ids, pair_ids, k),
                top_k_exact(norm(text_queries.float(), dim=-1), self.text, self.ids, pair_ids, k))
