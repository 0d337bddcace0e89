"""CLI: help for every command, and one clear `error:` line (exit 2) for bad input, never a traceback."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from clipping_edge.cli import main


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "clipping_edge.cli", *args], capture_output=True, text=True)


@pytest.mark.parametrize("command", ["train", "eval", "export", "classify", "info", "verify", "demo"])
def test_every_command_has_help(command: str):
    result = run_cli(command, "--help")
    assert result.returncode == 0 and "usage: clipping-edge" in result.stdout


def test_train_help_lists_every_student_method_and_recipe_with_a_line_each():
    from clipping_edge.training.config import METHODS, list_students
    from clipping_edge.training.data.augment import RECIPES

    lines = run_cli("train", "--help").stdout.splitlines()
    described = {line.split()[0]: line for line in lines if line.startswith("  ") and len(line.split()) > 1}
    for name in [*[s for s in list_students() if not s.startswith("test-")], *METHODS, *RECIPES]:
        assert name in described and len(described[name].split()) > 2, name
    assert "pretrained, 224 px" in described["effnet-minilm"] and "random init" in described["vit-nano"]


def one_error_line(capsys: pytest.CaptureFixture, *argv: str) -> str:
    assert main(list(argv)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    return err


def test_classify_errors(capsys: pytest.CaptureFixture, tiny_bundle: Path, tmp_path: Path, small_data: Path):
    image = str(next((small_data / "test" / "images").iterdir()))
    assert "does not exist" in one_error_line(capsys, "classify", "--bundle", str(tiny_bundle), "--labels", "a,b", str(tmp_path / "nope.png"))
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG garbage")
    assert "not a readable image" in one_error_line(capsys, "classify", "--bundle", str(tiny_bundle), "--labels", "a,b", str(tmp_path / "corrupt.png"))
    assert "label list is empty" in one_error_line(capsys, "classify", "--bundle", str(tiny_bundle), "--labels", ",", image)
    assert "labels file" in one_error_line(capsys, "classify", "--bundle", str(tiny_bundle), "--labels", str(tmp_path / "labels.txt"), image)
    assert "CUDAExecutionProvider" in one_error_line(capsys, "classify", "--bundle", str(tiny_bundle), "--labels", "a,b",
                                                     "--device", "cuda", image)
    assert "no manifest.json" in one_error_line(capsys, "classify", "--bundle", str(tmp_path), "--labels", "a,b", image)

    old = tmp_path / "old_bundle"
    shutil.copytree(tiny_bundle, old)
    manifest = json.loads((old / "manifest.json").read_text())
    (old / "manifest.json").write_text(json.dumps({**manifest, "format_version": 0}))
    assert "format version 0" in one_error_line(capsys, "classify", "--bundle", str(old), "--labels", "a,b", image)


def test_classify_prints_ranked_labels(capsys: pytest.CaptureFixture, tiny_bundle: Path, small_data: Path, tmp_path: Path):
    image = str(next((small_data / "test" / "images").iterdir()))
    labels = tmp_path / "labels.txt"
    labels.write_text("red circle\nblue square\n\ngreen star\n")
    assert main(["classify", "--bundle", str(tiny_bundle), "--labels", str(labels), "--top-k", "2", "--json", image]) == 0
    record = json.loads(capsys.readouterr().out.strip())
    assert record["image"] == image and len(record["predictions"]) == 2
    assert {p["label"] for p in record["predictions"]} <= {"red circle", "blue square", "green star"}
    assert record["predictions"][0]["score"] >= record["predictions"][1]["score"]


def test_export_and_train_errors(capsys: pytest.CaptureFixture, tiny_checkpoint: Path, tmp_path: Path):
    err = one_error_line(capsys, "export", "--checkpoint", str(tiny_checkpoint), "--target", "onxx", "--out", str(tmp_path / "b"))
    assert "unknown target 'onxx'" in err and "did you mean 'onnx'" in err
    assert not (tmp_path / "b").exists()
    err = one_error_line(capsys, "export", "--checkpoint", str(tiny_checkpoint), "--quantize", "int3", "--out", str(tmp_path / "b"))
    assert "--quantize 'int3'" in err
    assert "is not a checkpoint" in one_error_line(capsys, "export", "--checkpoint", str(tmp_path), "--out", str(tmp_path / "b"))
    assert "unknown --method 'clip-pong'" in one_error_line(capsys, "train", "--method", "clip-pong", "--out", str(tmp_path / "r"))
    assert "does not exist" in one_error_line(capsys, "train", "--data", str(tmp_path / "nodata"), "--out", str(tmp_path / "r"))
    assert "unknown student" in one_error_line(capsys, "train", "--student", "vit-nan", "--data", "synthetic", "--out", str(tmp_path / "r"), "--limit", "8")


def test_info_summarises_and_prints_the_manifest_as_json(capsys: pytest.CaptureFixture, tiny_bundle: Path):
    assert main(["info", str(tiny_bundle)]) == 0
    summary = capsys.readouterr().out.splitlines()
    assert len(summary) <= 8 and "onnx fp32 (valid)" in summary[0] and "SHA-256" in summary[-1]
    assert main(["info", "--json", str(tiny_bundle)]) == 0
    manifest = json.loads(capsys.readouterr().out)
    assert manifest["target"] == "onnx" and manifest["parity"]["passed"]


def test_progress_lines_when_stderr_is_not_a_terminal():
    """A logged run (CI, nohup, a pipe) gets periodic one-line progress with a rate and the time left."""
    code = ("import time; from clipping_edge.training.progress import progress_bar\n"
            "for _ in progress_bar(range(6), desc='extracting', total=6): time.sleep(0.1)")
    env = {**__import__("os").environ, "CLIPPING_EDGE_PROGRESS_SECONDS": "0.15"}
    env.pop("TQDM_DISABLE", None)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    lines = [line for line in result.stderr.splitlines() if line.startswith("extracting: ")]
    assert len(lines) >= 2 and "/6 (" in lines[0] and "left)" in lines[0], result.stderr


def test_version():
    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.startswith("clipping-edge ")


def test_classify_folder_skips_a_broken_file(capsys: pytest.CaptureFixture, tiny_bundle: Path, small_data: Path, tmp_path: Path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for image in sorted((small_data / "test" / "images").iterdir())[:3]:
        shutil.copy(image, folder / image.name)
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    assert main(["classify", "--bundle", str(tiny_bundle), "--labels", "red circle,blue square", str(folder)]) == 0
    captured = capsys.readouterr()
    assert len(captured.out.strip().splitlines()) == 3 and "broken.png" in captured.err and "warning:" in captured.err
    assert main(["classify", "--bundle", str(tiny_bundle), "--labels", "a,b", "--strict", str(folder)]) == 2


def test_prompts_default_to_the_bundles_and_can_be_chosen(capsys: pytest.CaptureFixture, tiny_bundle: Path,
                                                           small_data: Path, tmp_path: Path):
    """The bundle records the templates and synonyms its parity was measured with; a classifier built
    without templates uses them (as eval did), and --templates / --synonyms replace them."""
    from clipping_edge import ZeroShotClassifier, load
    from clipping_edge.classifier import class_prototypes
    from clipping_edge.prompts import DEFAULT_TEMPLATES
    from clipping_edge.training.data.pairs import read_pairs, resolve_split

    model = load(tiny_bundle)
    task = read_pairs(resolve_split(str(small_data), "test")).zero_shot
    assert model.manifest.templates == task.templates and model.manifest.templates != list(DEFAULT_TEMPLATES)
    labels = task.classes[:3]
    built = ZeroShotClassifier(model, labels).index.cosines(class_prototypes(model, labels, task.templates, task.synonyms))
    assert (built.diagonal() > 0.999).all()
    seven = ZeroShotClassifier(model, labels, DEFAULT_TEMPLATES).index.cosines(class_prototypes(model, labels, task.templates))
    assert not (seven.diagonal() > 0.999).all(), "explicit templates must replace the bundle's"

    image = str(next((small_data / "test" / "images").iterdir()))
    templates, synonyms = tmp_path / "templates.txt", tmp_path / "synonyms.json"
    templates.write_text("a drawing of a {}.\n{} on white\n")
    synonyms.write_text(json.dumps({"red circle": ["red circle", "red disc"]}))
    runs = {}
    for name, extra in {"bundle": [], "file": ["--templates", str(templates)], "80": ["--templates", "80"],
                        "synonyms": ["--templates", str(templates), "--synonyms", str(synonyms)]}.items():
        assert main(["classify", "--bundle", str(tiny_bundle), "--labels", "red circle,blue square", "--json", *extra, image]) == 0
        runs[name] = json.loads(capsys.readouterr().out)["predictions"][0]["cosine"]
    assert len(set(runs.values())) == 4, runs  # each prompt choice builds other prototypes
    assert "templates" in one_error_line(capsys, "classify", "--bundle", str(tiny_bundle), "--labels", "a,b", "--templates", "81", image)
    synonyms.write_text(json.dumps({"red circle": []}))
    assert "synonyms file" in one_error_line(capsys, "classify", "--bundle", str(tiny_bundle), "--labels", "a,b",
                                             "--synonyms", str(synonyms), image)


def test_every_train_flag_says_what_it_does():
    """`train --help` reads each flag's text from TrainConfig's comments: none may be left bare."""
    import dataclasses

    from clipping_edge.cli_args import field_comments
    from clipping_edge.training.config import TrainConfig

    comments = field_comments(TrainConfig)
    bare = [f.name for f in dataclasses.fields(TrainConfig) if len(comments.get(f.name, "")) < 10]
    assert not bare, f"TrainConfig fields without a comment: {bare}"
    help_text = " ".join(run_cli("train", "--help").stdout.split())
    assert "passes over the training pairs (default: 10)" in help_text and "Fini et al. 2023" in help_text


def test_every_option_of_every_command_says_what_it_does():
    import argparse

    from clipping_edge.cli import build_parser

    def bare(parser: argparse.ArgumentParser, command: str):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from bare(sub, f"{command} {name}".strip())
            elif action.dest != "help" and not (action.help or "").strip():
                yield f"{command} {'/'.join(action.option_strings) or action.dest}"

    assert not list(bare(build_parser(), ""))


def test_export_and_index_build_end_with_json(capsys: pytest.CaptureFixture, tiny_checkpoint: Path, tiny_bundle: Path,
                                              small_data: Path, tmp_path: Path):
    assert main(["export", "--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "b"), "--data", str(small_data),
                 "--json"]) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert record["bundle"] == str(tmp_path / "b") and record["parity"]["passed"] is True
    assert main(["index", "build", "--bundle", str(tiny_bundle), "--labels", "red circle,blue square", "--out",
                 str(tmp_path / "classes"), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["classes"] == 2 and record["dtype"] == "f16" and record["bytes"] > 0


def test_train_with_only_data_takes_the_recommended_cpu_recipe_and_every_switch_stays_settable():
    from clipping_edge.training.config import RECOMMENDED, TrainConfig

    bare = TrainConfig(data="my_folder")
    assert {k: getattr(bare, k) for k in RECOMMENDED} == RECOMMENDED
    assert (bare.student, bare.lock_image, bare.lock_text, bare.method, bare.logit_scale) == \
        ("effnet-minilm", True, True, "clip-ping", 7.0)
    one_off = TrainConfig(data="my_folder", method="clip", lock_text=False, anchors="imagenet")
    assert (one_off.student, one_off.lock_image, one_off.lock_text, one_off.method, one_off.anchors) == \
        ("effnet-minilm", True, False, "clip", "imagenet")
    named = TrainConfig(data="my_folder", student="vit-nano")  # a named student keeps the long-standing defaults
    assert (named.lock_image, named.lock_text, named.anchors, named.method, named.logit_scale) == (False, False, "", "clip-ping", 0.0)
    imported = TrainConfig(data="my_folder", student_from="open_clip:ViT-B-32=random")
    assert not imported.lock_image and imported.method == "clip-ping"
