"""What a target's writer is given (one tower to write) and, where its runtime cannot run here, what it gives
back: shared by the table of targets and every `to_*.py` writer, so neither imports the other."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch import nn


@dataclass
class TowerJob:
    kind: str  # "image" or "text"
    module: nn.Module
    input_name: str
    example: Callable[[int], torch.Tensor]  # batch size -> an example input
    path: Path  # where the tower goes (the target's suffix)
    precision: str
    calibration: Sequence[np.ndarray] = ()  # input batches from the training data, for calibrated precisions
    # Other training inputs, which the calibration did not see: what the int8 keep-float search scores.
    check: Sequence[np.ndarray] = ()
    report: dict = field(default_factory=dict)  # what the export measured and chose, for the manifest


@dataclass
class OfflineCheck:
    """Validation where the target's runtime cannot run on this OS."""
    simulated: nn.Module  # a PyTorch stand-in with the exported tower's numerics
    problems: list[str]  # structural problems found in the written files
    figures: dict  # what was checked, for the manifest
