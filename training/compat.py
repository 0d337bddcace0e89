"""Make the training dependencies import cleanly beside the CPU torch wheel.

timm needs torchvision, and once torchvision is installed transformers imports it too. PyPI's
torchvision wheel registers kernels for two operators that the CPU torch build never declared, so
`import torchvision` fails with "operator torchvision::nms does not exist". Declaring the schemas
first is enough: nothing here runs detection ops. Call before importing timm or transformers.

transformers also imports torchao (which litert-torch installs) when it builds a model; torchao then
tries to load CUDA/cp310 kernels it ships, logging "Failed to load ..." for each, and registers enums
with torch's pytree, which logs a deprecation per enum. We use no torchao kernel, so loading them is
skipped (torchao's own switch), and those two known messages are filtered by their loggers alone.
"""

from __future__ import annotations

import contextlib
import logging
import os

os.environ.setdefault("TORCHAO_FORCE_SKIP_LOADING_SO_FILES", "1")

import torch  # noqa: E402


class _DropMessages(logging.Filter):
    def __init__(self, *fragments: str):
        super().__init__()
        self.fragments = fragments

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(f in record.getMessage() for f in self.fragments)


logging.getLogger("torch.utils._pytree").addFilter(_DropMessages("register_constant() on Enum subclasses is deprecated"))
logging.getLogger("torchao").addFilter(_DropMessages("Failed to load", "Skipping import of cpp extensions"))

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


@contextlib.contextmanager
def quiet_transformers():
    """transformers' weight-loading bar and its load report (which lists the layers a shortened encoder
    leaves out on purpose) are noise in a training log; its errors still show."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def import_open_clip():
    """open_clip (for its architectures and CLIP's vocabulary; never its downloads), after the torchvision fix."""
    declare_torchvision_ops()
    try:
        import open_clip
    except ImportError:
        from clipping_edge.errors import ClippingEdgeError

        raise ClippingEdgeError("CLIP-family models need `pip install open-clip-torch -c constraints.txt` "
                                "(part of clipping-edge[train])") from None
    return open_clip
