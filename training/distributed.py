"""torch.distributed for the trainer: process group from torchrun's environment, the global-batch
sampler, and the all-gather that keeps gradients flowing through the local shard (as open_clip does).

One process is the world of size 1: every call here is then a no-op, so the trainer has one code path.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, fields
from datetime import timedelta
from typing import Iterator

import torch
import torch.distributed as dist


@dataclass
class Distributed:
    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_environment(cls, device_type: str) -> "Distributed":
        """Join the process group torchrun describes (RANK, WORLD_SIZE, MASTER_ADDR, ...); NCCL on GPUs,
        Gloo on CPU. Without torchrun: one process."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world == 1:
            return cls()
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device_type == "cuda" else "gloo", timeout=timedelta(minutes=30))
        return cls(dist.get_rank(), dist.get_world_size())

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def gather(self, x: torch.Tensor, dim: int = 0) -> torch.Tensor:
        """Concatenate every rank's `x` along `dim` in rank order; gradients flow through this rank's
        part only (the other parts are constants here and get their gradients on their own rank)."""
        if self.world == 1:
            return x
        parts = [torch.empty_like(x) for _ in range(self.world)]
        dist.all_gather(parts, x.detach().contiguous())
        parts[self.rank] = x
        return torch.cat(parts, dim=dim)

    def all_reduce_mean(self, value: float) -> float:
        if self.world == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(t)
        return t.item() / self.world

    def shutdown(self) -> None:
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


class GlobalBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Each step's global batch is the next `batch_size * world` indices of one permutation of the data
    (seeded by seed and epoch); rank r takes its r-th slice. Any world size therefore trains on the same
    global batches, and the same global batch as one process with `batch_size * world`."""

    def __init__(self, n: int, batch_size: int, rank: int = 0, world: int = 1, seed: int = 0):
        self.n, self.batch_size, self.rank, self.world, self.seed = n, batch_size, rank, world, seed
        self.epoch = 0

    def __len__(self) -> int:
        return self.n // (self.batch_size * self.world)

    def __iter__(self) -> Iterator[list[int]]:
        order = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 1000 + self.epoch)).tolist()
        step = self.batch_size * self.world
        for start in range(0, len(self) * step, step):
            mine = start + self.rank * self.batch_size
            yield order[mine:mine + self.batch_size]


def launch_torchrun(cfg, nproc: int) -> int:
    """`clipping-edge train --nproc N`: the same training in N local processes under torchrun
    (single node; for several nodes call torchrun yourself, see README)."""
    argv = []
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        flag = "--" + f.name.replace("_", "-")
        if isinstance(value, bool):
            argv.append(flag if value else "--no-" + flag[2:])
        elif value is not None:
            argv += [flag, str(value)]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "-m", "clipping_edge.training", *argv]
    print("launching: " + " ".join(command), flush=True)
    return subprocess.call(command)
