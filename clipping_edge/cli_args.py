"""The argparse types, readers and helpers every package's commands share (the runtime's, training's, export's,
benchmarks'): one place for how a label list, a number or a config dataclass becomes a flag."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from pathlib import Path

from .errors import ClippingEdgeError


def read_list_file(path: Path, what: str, example: str) -> list[str]:
    """One entry a line, or a .json list of strings."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ClippingEdgeError(f"{what} file {path} is not UTF-8 text: save it as UTF-8") from None
    if path.suffix != ".json":
        return [line.strip() for line in text.splitlines() if line.strip()]
    try:
        entries = json.loads(text)
    except ValueError as exc:
        raise ClippingEdgeError(f"{what} file {path} is not valid JSON ({exc}): write a list such as {example}") from None
    if not isinstance(entries, list) or not all(isinstance(entry, str) for entry in entries):
        raise ClippingEdgeError(f"{what} file {path} must hold a JSON list of strings, such as {example}")
    return entries


def is_existing_file(path: Path) -> bool:
    """`Path.is_file` that answers False for a name no file system can hold (a long label list is not a path)."""
    try:
        return path.is_file()
    except OSError:
        return False


def read_labels(value: str) -> list[str]:
    """A .txt file (one label a line), a .json list of strings, or a comma-separated list."""
    path = Path(value)
    if path.suffix in (".txt", ".json") or is_existing_file(path):
        if not is_existing_file(path):
            raise ClippingEdgeError(f"labels file {path} does not exist: pass a .txt with one label a line, or 'a,b,c'")
        return read_list_file(path, "labels", '["cat", "dog"]')
    labels = [part.strip() for part in value.split(",") if part.strip()]
    if not labels:
        raise ClippingEdgeError(f"the label list is empty (--labels {value!r}): pass at least two classes ('a,b'), or the "
                                "path of a labels file")
    if len(labels) == 1:
        # One class always scores 1.0; a lone word is far more often a mistyped labels file.
        raise ClippingEdgeError(f"--labels {value!r} is one class and no such file exists: pass at least two "
                                "classes ('a,b'), or the path of a labels file")
    return labels


def read_templates(value: str | None) -> list[str] | None:
    """None (the bundle's own), `7` / `80` (CLIP's ImageNet sets), or a .txt (one a line) / .json list."""
    from .prompts import TEMPLATE_SETS, check_templates

    if value is None or value == "bundle":
        return None
    if value in TEMPLATE_SETS:
        return list(TEMPLATE_SETS[value])
    if not Path(value).is_file():
        raise ClippingEdgeError(f"--templates {value!r} is neither bundle, 7, 80 nor a file: pass a .txt with one "
                                "template a line, such as 'a photo of a {}.'")
    templates = read_list_file(Path(value), "templates", "[\"a photo of a {}.\"]")
    if not templates:
        raise ClippingEdgeError(f"templates file {value} is empty: write one template a line, such as 'a photo of a {{}}.'")
    return check_templates(templates)


def read_synonyms(value: str | None) -> dict[str, list[str]] | None:
    """A .json object of label -> list of names, each embedded with every template and averaged."""
    if value is None:
        return None
    path = Path(value)
    if not path.is_file():
        raise ClippingEdgeError(f"synonyms file {path} does not exist: pass a .json such as "
                                '{"cat": ["cat", "kitten"], "dog": ["dog", "puppy"]}')
    try:
        synonyms = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ClippingEdgeError(f"synonyms file {path} is not UTF-8 JSON ({exc}): write an object such as "
                                '{"cat": ["cat", "kitten"]}') from None
    if not isinstance(synonyms, dict) or not all(isinstance(v, list) and v and all(isinstance(n, str) and n.strip() for n in v)
                                                 for v in synonyms.values()):
        raise ClippingEdgeError(f"synonyms file {path} must map each label to a non-empty list of names, such as "
                                '{"cat": ["cat", "kitten"]}')
    return synonyms


def number(kind: type, minimum: float, strict: bool = False):
    """An argparse type: an int or finite float of at least `minimum` (above it, with `strict`)."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        if not math.isfinite(value) or value < minimum or (strict and value == minimum):
            raise argparse.ArgumentTypeError(f"{text} must be {'above' if strict else 'at least'} {minimum:g}")
        return value
    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


POSITIVE = number(int, 1)
NON_NEGATIVE = number(int, 0)



class ProgressLine:
    """'embedded 320/960 images (26.1/s, 25 s left)' on stderr every few seconds and at the end: a large
    folder is never silent, on a terminal or in a log."""

    def __init__(self, verb: str, unit: str, every_s: float = 5.0):
        import time

        self.verb, self.unit, self.every_s, self.clock = verb, unit, every_s, time.perf_counter
        self.start = self.last = self.clock()

    def __call__(self, done: int, total: int) -> None:
        now = self.clock()
        if now - self.last < self.every_s and done < total:
            return
        self.last = now
        rate = done / max(now - self.start, 1e-9)
        left = f", {(total - done) / rate:.0f} s left" if done < total and rate > 0 else ""
        print(f"{self.verb} {done}/{total} {self.unit} ({rate:.1f}/s{left})", file=sys.stderr, flush=True)



def field_comments(cls: type) -> dict[str, str]:
    """Each dataclass field's comments (the lines just above it and its own line's tail), so `--help`
    says what the source says and the two cannot drift apart."""
    import inspect
    import re

    comments, pending = {}, []
    for line in inspect.getsource(cls).splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            pending.append(stripped.lstrip("# "))
            continue
        match = re.match(r"(\w+): [^=#]+(?:=.*?)?(?:#\s*(.*))?$", stripped)
        if match:
            comments[match.group(1)] = " ".join(pending + ([match.group(2)] if match.group(2) else []))
        pending = []
    return comments


def add_dataclass_args(parser: argparse.ArgumentParser, cls: type, minimums: dict[str, tuple[float, bool]]) -> None:
    """One --flag per config field: the dataclass stays the single place defaults and their reasons live."""
    comments = field_comments(cls)
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        about = comments.get(f.name, "").replace("%", "%%")
        base = str(f.type).replace(" | None", "")
        if base == "bool":
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default, help=about or None)
        else:
            kind = {"int": int, "float": float}.get(base)
            parse = number(kind, *minimums.get(f.name, (-math.inf, False))) if kind else str
            if f.default is dataclasses.MISSING:
                parser.add_argument(flag, type=parse, required=True, help=about or None)
            else:
                shown = "" if f.default is None else f" (default: {f.default})"  # None: the comment says what unset does
                parser.add_argument(flag, type=parse, default=f.default, help=f"{about}{shown}".lstrip())



def add_runtime_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=POSITIVE, help="CPU threads of the runtime (default: the runtime's choice)")
    p.add_argument("--device", help="where the towers run, in the bundle's runtime's terms (default: the CPU). onnx: "
                                    "cpu, cuda or provider names (TensorrtExecutionProvider,CUDAExecutionProvider); "
                                    "openvino: CPU, GPU, NPU, AUTO; tflite: cpu or delegate:PATH; coreml: all, cpu_only, "
                                    "cpu_and_gpu, cpu_and_ne")


def add_prompt_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--templates", metavar="bundle|7|80|FILE",
                   help="prompt templates: the bundle's own (default: those its export was validated with, else CLIP's 7), "
                        "CLIP's 7 or 80 ImageNet sets, or a file with one template a line ('a photo of a {}.')")
    p.add_argument("--synonyms", metavar="FILE.json",
                   help="label -> names, each embedded with every template and averaged: {\"cat\": [\"cat\", \"kitten\"]}")


