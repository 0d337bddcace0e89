"""Make PyPI's torchvision importable beside the CPU torch wheel.

timm needs torchvision, and once torchvision is installed transformers imports it too. PyPI's
torchvision wheel registers kernels for two operators that the CPU torch build never declared, so
`import torchvision` fails with "operator torchvision::nms does not exist". Declaring the schemas
first is enough: nothing here runs detection ops. Call before importing timm or transformers.
"""

from __future__ import annotations

import torch

_SCHEMAS = {"nms": "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
            "qnms": "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor"}
_done = False


def declare_torchvision_ops() -> None:
    global _done
    if _done:
        return
    for name, schema in _SCHEMAS.items():
        try:
            torch.library.define(f"torchvision::{name}", schema)
        except RuntimeError:  # already declared: a CUDA torch, or torchvision imported first
            pass
    _done = True


def import_timm():
    declare_torchvision_ops()
    try:
        import timm
    except ImportError:
        from clipping_edge.errors import ClippingEdgeError

        raise ClippingEdgeError("timm students and teachers need `pip install timm -c constraints.txt` "
                                "(part of clipping-edge[train])") from None
    return timm
