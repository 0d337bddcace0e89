"""Load order of native libraries.

usearch's wheel links parts of libstdc++ statically and exports them. When usearch is the first
module to load the shared libstdc++, that library's own references are bound inside usearch's symbol
scope, so its codecvt vtables point into usearch's copy; onnxruntime then crashes (SIGSEGV in
`codecvt<char16_t>::do_unshift`) while it imports. Loading libstdc++ globally before usearch binds
it to itself, and every import order after that works.
"""

from __future__ import annotations

import ctypes
import sys

from .errors import ClippingEdgeError

_USEARCH_FIRST = False


def preload_cxx_runtime() -> None:
    global _USEARCH_FIRST
    if not sys.platform.startswith("linux"):
        return
    # Too late if usearch came first: libstdc++ is already bound to it (checked by the ONNX backend).
    _USEARCH_FIRST = "usearch.compiled" in sys.modules and "onnxruntime" not in sys.modules
    try:
        ctypes.CDLL("libstdc++.so.6", mode=ctypes.RTLD_GLOBAL)
    except OSError:  # a system without a shared libstdc++ has nothing to bind wrongly
        pass


def check_onnxruntime_loadable() -> None:
    if _USEARCH_FIRST and "onnxruntime" not in sys.modules:
        raise ClippingEdgeError("usearch was imported before clipping_edge, and its bundled C++ runtime makes "
                                "onnxruntime crash on import: import clipping_edge (or onnxruntime) before usearch")
