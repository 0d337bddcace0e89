"""clipping-edge runtime: torch-free zero-shot classification with an exported bundle.

    import clipping_edge
    model = clipping_edge.load("runs/demo/bundle")
    clf = clipping_edge.ZeroShotClassifier(model, ["red circle", "blue square"])
    clf.classify(["photo.png"], top_k=2)
"""

from ._native import preload_cxx_runtime

preload_cxx_runtime()  # before anything of ours imports usearch: see _native.py

from .classifier import Prediction, ZeroShotClassifier, class_prototypes
from .errors import ClippingEdgeError
from .gallery import Hit, ImageGallery
from .index import PrototypeIndex
from .manifest import FORMAT_VERSION, Manifest, read_manifest
from .model import EdgeModel, load

__version__ = "0.1.0"

__all__ = ["ClippingEdgeError", "EdgeModel", "FORMAT_VERSION", "Hit", "ImageGallery", "Manifest", "Prediction", "PrototypeIndex",
           "ZeroShotClassifier", "class_prototypes", "load", "read_manifest", "__version__"]
