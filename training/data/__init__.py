from .pairs import Pair, PairSet, ZeroShotTask, read_pairs, resolve_split

__all__ = ["Pair", "PairSet", "ZeroShotTask", "read_pairs", "resolve_split"]
