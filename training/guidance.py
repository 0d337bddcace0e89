"""CLIP-PING's guidance during training: where each step's nearest-neighbour (NN) and cross-nearest-neighbour (XNN)
targets come from, mined from the feature banks before an epoch or searched online at every step."""

from __future__ import annotations

import time

import torch

from .banks import FeatureBanks
from .config import TrainConfig
from .losses import Embeddings, NeighbourTargets
from .neighbours import SupportSet, draw_support, mine_neighbours, targets_for
from .run_setup import has_bf16
from .teachers import ImageTeacher, TextTeacher


class NeighbourGuide:
    """Where each step's NN/XNN targets come from.

    clip-ping, teacher query: the whole bank mined against a support set before the epoch (and every
    `support_refresh` steps). a-clip-ping: the teachers embed the batch's augmented view online and
    the support set is searched at every step. Student query: the heads' projections of the student
    search the support set at every step. With k > 1 neighbours, each pair uses one of its k, drawn
    from a table fixed per refresh, so any number of processes picks the same ones.
    """

    def __init__(self, cfg: TrainConfig, banks: FeatureBanks, device: torch.device,
                 teachers: tuple[ImageTeacher, TextTeacher] | None):
        self.cfg, self.banks, self.device, self.teachers = cfg, banks, device, teachers
        self.online = cfg.method == "a-clip-ping" or cfg.neighbour_query == "student"
        self.mined = self.support = self.choice = None
        self.mining_seconds = 0.0
        self.mining_method = ""

    def refresh(self, epoch: int, step: int) -> None:
        every = self.cfg.support_refresh
        if step > 0 and not (every and step % every == 0):
            return
        generator = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + epoch * 10_007 + step)
        n = len(self.banks)
        if self.online:
            start = time.perf_counter()
            self.support = SupportSet(self.banks.image, self.banks.text, draw_support(n, self.cfg.support_size, generator),
                                      self.device)
            self.mining_seconds += time.perf_counter() - start
        else:
            self.mined = mine_neighbours(self.banks.image, self.banks.text, self.cfg.support_size, generator,
                                         self.cfg.neighbours, self.cfg.mining)
            self.mining_seconds += self.mined.seconds
            self.mining_method = self.mined.method
        self.choice = torch.randint(self.cfg.neighbours, (n,), generator=generator)

    def _pick(self, neighbours: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        column = self.choice[idx.cpu()].clamp(max=neighbours.shape[1] - 1).to(neighbours.device)
        return neighbours.gather(1, column.unsqueeze(1)).squeeze(1)

    @torch.no_grad()
    def targets(self, idx: torch.Tensor, pixels: torch.Tensor, captions: list[str], emb: Embeddings) -> NeighbourTargets:
        """Targets for the local batch. pixels/captions: the first view of each pair, as the student saw it."""
        if not self.online:
            image_nn, text_nn = self.mined.image_nn[idx], self.mined.text_nn[idx]
        else:
            if self.cfg.neighbour_query == "student":
                image_query, text_query = emb.projected["image_to_image"][0], emb.projected["text_to_text"][0]
            else:
                image_teacher, text_teacher = self.teachers
                # bf16 where the hardware has it: 2.2x faster on this CPU, cosine 0.998 to fp32, and the
                # queries only rank neighbours.
                with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cfg.teacher_bf16 and has_bf16(self.device)):
                    image_query, text_query = image_teacher.encode(pixels), text_teacher.encode(captions)
            image_nn, text_nn = self.support.search(image_query, text_query, idx, self.cfg.neighbours)
        j, k = self._pick(image_nn, idx), self._pick(text_nn, idx)
        return targets_for(self.banks.image, self.banks.text, j, k, self.device, self.cfg.xnn)
