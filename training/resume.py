"""What `train --resume` saves and restores beside the student's weights, and the checks that refuse a state that is
not this run's before it fails deep in a step."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from clipping_edge.atomic import recover
from clipping_edge.errors import ClippingEdgeError

from .checkpoint import WEIGHTS, check_finite, load_trainer_state


@dataclass
class TrainingState:
    """Everything --resume restores: weights, heads, optimizer, loss scaler, RNG, epoch. The learning-rate
    schedule is a function of the step, recomputed from the epoch, so another world size resumes too."""

    model: nn.Module  # the trainer's TrainingModel: .student and .heads
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    epoch: int = 0

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "heads": self.model.heads.state_dict() if self.model.heads is not None else {},
                "optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(),
                "torch_rng": torch.get_rng_state()}

    def restore(self, ckpt_dir: Path, device: torch.device, epochs: int) -> None:
        recover(ckpt_dir)  # a crash mid-swap leaves the finished checkpoint beside its name
        state = load_trainer_state(ckpt_dir, device)
        try:
            weights = load_file(str(ckpt_dir / WEIGHTS), device=str(device))
        except Exception as exc:  # safetensors' own error types: a truncated, empty, missing or lying file
            raise ClippingEdgeError(f"--resume: {ckpt_dir / WEIGHTS} is not a readable safetensors file "
                                    f"({type(exc).__name__}: {str(exc)[:160]}): resume from a copy, or drop --resume") from None
        try:
            check_finite(weights, ckpt_dir)
            self.model.student.load_state_dict(weights)
            if self.model.heads is not None:
                self.model.heads.load_state_dict(state["heads"])
            self.optimizer.load_state_dict(state["optimizer"])
            check_moments(self.optimizer)
            self.scaler.load_state_dict(state["scaler"])
            torch.set_rng_state(state["torch_rng"].cpu())
            self.epoch = saved_epoch(state.get("epoch"), ckpt_dir, epochs)
        except (RuntimeError, KeyError, ValueError, TypeError, OSError) as exc:
            raise ClippingEdgeError(f"--resume: {ckpt_dir} does not fit this run ({type(exc).__name__}: "
                                    f"{str(exc).splitlines()[0][:200]}): resume with the run's own --student, "
                                    "--method and options, or drop --resume") from None


def check_moments(optimizer: torch.optim.Optimizer) -> None:
    """An optimizer state whose moments do not have their parameters' shapes fails at the first step, deep in
    AdamW: refused when it is read."""
    for group in optimizer.param_groups:
        for param in group["params"]:
            for name, value in optimizer.state.get(param, {}).items():
                if torch.is_tensor(value) and value.dim() and value.shape != param.shape:
                    raise ValueError(f"optimizer {name} has shape {tuple(value.shape)} for a parameter of {tuple(param.shape)}")


def saved_epoch(value: object, ckpt_dir: Path, epochs: int) -> int:
    """The epochs a saved run had finished: a whole number from 0 to --epochs, or the state is not ours."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= epochs:
        raise ClippingEdgeError(f"--resume: the trainer state in {ckpt_dir} says it finished epoch {str(value)[:40]}, which is "
                                f"not a whole number from 0 to --epochs {epochs}: resume with the run's own --epochs, or drop "
                                "--resume to start anew")
    return value
