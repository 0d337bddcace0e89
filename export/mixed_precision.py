"""Mixed-precision int8 for every target that quantizes with calibration: keep float32 the fewest layers that
bring the worst check row (a training input the calibration did not see) back close to the float tower. The
target supplies how to quantize with some layers left float and how to score the result; the search is the
same for all."""

from __future__ import annotations

from typing import Callable, Sequence, TypeVar

import numpy as np

# The worst check row's cosine (int8 tower against its float32 tower) below which layers are kept float: above
# the int8 gate (0.99), which the test split must then pass. Scored on the calibration rows themselves, an
# EfficientNet-Lite0 tower reached 0.995 there and 0.965 on the test split (its activation ranges fit them).
INT8_MIN_CHECK_COSINE = 0.995

Quantized = TypeVar("Quantized")  # what a target's quantizer makes: a file's bytes, an in-memory model


def worst_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """The validation gate's row cosine; NaN anywhere gives NaN, which no threshold passes."""
    from clipping_edge.classifier import row_cosines

    return float(row_cosines(a.reshape(len(a), -1), b.reshape(len(b), -1)).min())


def keep_sensitive_float(quantize: Callable[[Sequence[str]], Quantized], score: Callable[[Quantized], float],
                         candidates: Callable[[Quantized], Sequence[str]]) -> tuple[Quantized, dict]:
    """`quantize(kept)` quantizes the tower leaving the layers named in `kept` float32; `score` gives a quantized
    tower's worst check-row cosine; `candidates` reads the layers the quantizer made int8 (it is given the
    all-int8 tower, and is called only when a search is needed). Where all-int8 scores
    under INT8_MIN_CHECK_COSINE, keep float the fewest of the most harmful layers that reach it (each
    layer's harm: the cosine lost with it alone in int8; then a binary search over how many). A MiniLM text tower
    lost 0.09 cosine in all-int8; its Q/K/V products 0.01-0.015 each, most others under 0.001.
    Returns the chosen tower and, for the manifest, what was measured and kept."""
    chosen = quantize([])
    worst = score(chosen)
    record = {"check_cosine_min_all_int8": round(worst, 6), "kept_float": []}
    if worst >= INT8_MIN_CHECK_COSINE:
        record["check_cosine_min"] = record["check_cosine_min_all_int8"]
        return chosen, record

    candidates = list(candidates(chosen))
    harm = {n: 1 - score(quantize([c for c in candidates if c != n])) for n in candidates}
    order = sorted(candidates, key=lambda n: -harm[n] if np.isfinite(harm[n]) else -np.inf)
    # The fewest most-harmful layers kept float that reach the mark (binary search: more float, closer).
    low, high, best = 1, len(order), None
    while low <= high:
        middle = (low + high) // 2
        tried = quantize(order[:middle])
        reached = score(tried)
        if reached >= INT8_MIN_CHECK_COSINE:
            high, best = middle - 1, (middle, reached, tried)
        else:
            low = middle + 1
    if best is None:  # not even with every candidate float: what else is int8 (a Transpose's input) decides
        tried = quantize(order)
        best = (len(order), score(tried), tried)
        # Float layers that do not lift it are only cost: the tiny test ViT on an AVX2 CPU scored 0.965 all-int8
        # and 0.963 with its 9 layers float, while its attention op's inputs were int8 and no candidate.
        if np.nan_to_num(worst, nan=-2.0) > np.nan_to_num(best[1], nan=-2.0):  # NaN is the worst of all
            best = (0, worst, chosen)
    count, reached, chosen = best
    record.update(kept_float=order[:count], quantized=len(candidates) - count, check_cosine_min=round(reached, 6))
    return chosen, record
