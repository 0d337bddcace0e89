"""The safety contract (DESIGN.md), case by case: a corpus of bad inputs through the CLI and the API, each
ending in exit 2 and one `error:` line with nothing destroyed, and the faults behind them (a user's
folder at --out, the input run at --out, a crafted pickle, NaN weights, a bit-flipped tower, edited
index labels, decompression bombs, concurrent gallery writes, crashes between renames)."""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import pickle
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from clipping_edge.cli import main, user_error
from clipping_edge.errors import ClippingEdgeError


def snapshot(path: Path) -> dict[str, str]:
    """Every file under `path` (or `path` itself) by its SHA-256: equal snapshots mean nothing changed."""
    if path.is_file():
        return {path.name: hashlib.sha256(path.read_bytes()).hexdigest()}
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.rglob("*")) if p.is_file()}


def one_error(capsys: pytest.CaptureFixture, *argv: str, code: int = 2) -> str:
    """Run the CLI in-process; exactly one `error:` line on stderr, no traceback, the exit status `code`."""
    try:
        status = main(list(argv))
    except SystemExit as exc:  # argparse's usage errors leave through exit()
        status = exc.code
    err = capsys.readouterr().err.strip()
    assert status == code, err
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


@pytest.fixture()
def image(small_data: Path) -> str:
    return str(next((small_data / "test" / "images").iterdir()))


def copy_bundle(bundle: Path, dest: Path) -> Path:
    shutil.copytree(bundle, dest)
    return dest


def edit_manifest(bundle: Path, **changes) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text())
    (bundle / "manifest.json").write_text(json.dumps({**manifest, **changes}))


# -- never destroy ------------------------------------------------------------------------------------

def test_export_refuses_a_users_folder_and_the_input_run(capsys, tiny_checkpoint: Path, small_data: Path, tmp_path: Path):
    users = tmp_path / "mine"
    users.mkdir()
    (users / "notes.txt").write_text("my work")
    before = snapshot(users)
    err = one_error(capsys, "export", "--checkpoint", str(tiny_checkpoint), "--out", str(users), "--data", str(small_data))
    assert "--force" in err and snapshot(users) == before

    run_dir = tiny_checkpoint.parent
    before = snapshot(run_dir)
    err = one_error(capsys, "export", "--checkpoint", str(tiny_checkpoint), "--out", str(run_dir), "--data", str(small_data))
    assert "holds the input" in err and snapshot(run_dir) == before
    # --force never deletes the input either
    one_error(capsys, "export", "--checkpoint", str(tiny_checkpoint), "--out", str(run_dir), "--force")
    assert snapshot(run_dir) == before

    a_file = tmp_path / "bundle.txt"
    a_file.write_text("keep me")
    one_error(capsys, "export", "--checkpoint", str(tiny_checkpoint), "--out", str(a_file), "--data", str(small_data))
    assert a_file.read_text() == "keep me"


def test_export_replaces_its_own_bundle_and_with_force_a_folder(tiny_checkpoint: Path, small_data: Path, tmp_path: Path):
    from clipping_edge.export.bundle import export_bundle

    out = tmp_path / "bundle"
    export_bundle(tiny_checkpoint, out, "onnx", "none", str(small_data))
    (out / "stale.txt").write_text("from an earlier export")
    export_bundle(tiny_checkpoint, out, "onnx", "none", str(small_data))  # our own bundle: replaced
    assert not (out / "stale.txt").exists() and (out / "manifest.json").is_file()

    users = tmp_path / "users"
    users.mkdir()
    (users / "x").write_text("x")
    export_bundle(tiny_checkpoint, users, "onnx", "none", str(small_data), force=True)
    assert (users / "manifest.json").is_file() and not (users / "x").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no temporary siblings are left"


def test_data_commands_refuse_a_users_folder(capsys, small_data: Path, tmp_path: Path):
    users = tmp_path / "photos"
    users.mkdir()
    (users / "cat.jpg").write_bytes(b"not really")
    before = snapshot(users)
    one_error(capsys, "data", "synth", "--out", str(users), "--n-train", "4", "--n-test", "2")
    one_error(capsys, "data", "shard", "--data", str(small_data), "--out", str(users))
    one_error(capsys, "data", "prepare", "fashion-mnist", "--out", str(users), "--source", str(tmp_path / "none"))
    assert snapshot(users) == before
    before = snapshot(small_data)
    assert "holds the input" in one_error(capsys, "data", "shard", "--data", str(small_data / "train"), "--out", str(small_data))
    assert snapshot(small_data) == before


def test_index_sidecar_never_takes_the_labels_file(capsys, tiny_bundle: Path, tmp_path: Path):
    labels = tmp_path / "classes.json"
    labels.write_text(json.dumps(["red circle", "blue square"]))
    assert main(["index", "build", "--bundle", str(tiny_bundle), "--labels", str(labels), "--out", str(tmp_path / "classes.usearch")]) == 0
    assert json.loads(labels.read_text()) == ["red circle", "blue square"]
    assert (tmp_path / "classes.usearch.json").is_file()
    capsys.readouterr()
    users = tmp_path / "vectors.usearch"
    users.write_bytes(b"someone else's index")
    one_error(capsys, "index", "build", "--bundle", str(tiny_bundle), "--labels", "a,b", "--out", str(users))
    assert users.read_bytes() == b"someone else's index"


def test_concurrent_gallery_additions_keep_every_image(tiny_bundle: Path, small_data: Path, tmp_path: Path):
    images = sorted((small_data / "test" / "images").iterdir())[:40]
    halves = [tmp_path / "a", tmp_path / "b"]
    for half, part in zip(halves, (images[:20], images[20:])):
        half.mkdir()
        for p in part:
            shutil.copy(p, half / p.name)
    gallery = tmp_path / "gallery.usearch"
    cmd = [sys.executable, "-m", "clipping_edge.cli", "index", "add", "--bundle", str(tiny_bundle), "--index", str(gallery)]
    procs = [subprocess.Popen([*cmd, str(h)], stdout=subprocess.PIPE, stderr=subprocess.PIPE) for h in halves]
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read()
    from clipping_edge import ImageGallery, load

    assert len(ImageGallery.open(gallery, load(tiny_bundle))) == 40


# -- never execute --------------------------------------------------------------------------------

class Payload:
    def __reduce__(self):
        return (os.mkdir, ("PWNED_BY_PICKLE",))


def test_resume_never_unpickles(capsys, tiny_checkpoint: Path, small_data: Path, tmp_path: Path, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(tiny_checkpoint, run / "checkpoint")
    for name in ("trainer_state.json", "trainer_state.safetensors"):
        (run / "checkpoint" / name).unlink()
    (run / "checkpoint" / "trainer_state.pt").write_bytes(pickle.dumps(Payload()))
    monkeypatch.chdir(tmp_path)
    err = one_error(capsys, "train", "--data", str(small_data), "--out", str(run), "--student", "test-tiny",
                    "--method", "clip", "--epochs", "2", "--resume", "--workers", "0", "--batch-size", "64")
    assert "trainer_state" in err and not (tmp_path / "PWNED_BY_PICKLE").exists()


def test_trainer_state_round_trips_without_pickle(tmp_path: Path):
    import torch

    from clipping_edge.training.checkpoint import _join_tensors, _split_tensors

    state = {"epoch": 3, "optimizer": {"state": {0: {"step": torch.tensor(5.0), "exp_avg": torch.randn(3)}},
                                       "param_groups": [{"lr": 0.1, "betas": (0.9, 0.98), "params": [0], "foreach": None}]},
             "torch_rng": torch.get_rng_state()}
    tensors: dict = {}
    back = _join_tensors(json.loads(json.dumps(_split_tensors(state, "", tensors))), tensors)
    assert back["epoch"] == 3 and list(back["optimizer"]["state"]) == [0]
    assert torch.equal(back["optimizer"]["state"][0]["exp_avg"], state["optimizer"]["state"][0]["exp_avg"])
    assert torch.equal(back["torch_rng"], state["torch_rng"]) and back["optimizer"]["param_groups"][0]["betas"] == [0.9, 0.98]


def test_resume_with_another_student_is_one_error(capsys, tiny_checkpoint: Path, small_data: Path, tmp_path: Path):
    run = tmp_path / "run"
    shutil.copytree(tiny_checkpoint, run / "checkpoint")
    err = one_error(capsys, "train", "--data", str(small_data), "--out", str(run), "--student", "test-tiny-cnn",
                    "--method", "clip", "--epochs", "30", "--resume", "--workers", "0", "--batch-size", "64")
    assert "does not fit this run" in err


# -- never silently wrong -------------------------------------------------------------------------

def test_nan_weights_are_refused_by_export_and_eval(capsys, tiny_checkpoint: Path, small_data: Path, tmp_path: Path):
    import torch
    from safetensors.torch import load_file, save_file

    bad = tmp_path / "nan"
    shutil.copytree(tiny_checkpoint, bad)
    weights = load_file(str(bad / "model.safetensors"))
    name = next(k for k, v in weights.items() if v.is_floating_point())
    weights[name] = torch.full_like(weights[name], float("nan"))
    save_file(weights, str(bad / "model.safetensors"))
    assert "non-finite" in one_error(capsys, "export", "--checkpoint", str(bad), "--out", str(tmp_path / "b"), "--data", str(small_data))
    assert not (tmp_path / "b").exists()
    assert "non-finite" in one_error(capsys, "eval", "--checkpoint", str(bad), "--data", str(small_data), "--no-probe")


def test_gates_fail_on_nan():
    from clipping_edge.export.validate import gate

    record = {"image_cosine_min": math.nan, "text_cosine_min": 1.0, "zero_shot_agreement": math.nan,
              "top1_drop_points": math.nan, "max_probability_diff": math.nan}
    checked = gate(record, "fp32", "fp32")
    assert not checked["passed"] and len(checked["failures"]) == 4


@pytest.mark.parametrize("changes, expected", [
    ({"logit_scale": float("nan")}, "logit_scale"), ({"logit_scale": 1e308}, "logit_scale"),
    ({"embed_dim": "128"}, "embed_dim"), ({"image_size": 0}, "image_size"), ({"files": {}}, "checksum"),
    ({"image_tower": "../../etc/passwd"}, "outside the bundle"), ({"format_version": 1}, "format version 1"),
    ({"sigmoid": {"logit_scale": float("nan"), "logit_bias": -10.0}}, "sigmoid"),
    ({"sigmoid": {"logit_scale": 10.0}}, "sigmoid"), ({"sigmoid": {"logit_scale": 10.0, "logit_bias": True}}, "sigmoid"),
])
def test_manifest_schema(capsys, tiny_bundle: Path, tmp_path: Path, image: str, changes: dict, expected: str):
    bundle = copy_bundle(tiny_bundle, tmp_path / "b")
    edit_manifest(bundle, **changes)
    assert expected in one_error(capsys, "classify", "--bundle", str(bundle), "--labels", "a,b", image)


def test_manifest_that_is_not_an_object(capsys, tiny_bundle: Path, tmp_path: Path, image: str):
    bundle = copy_bundle(tiny_bundle, tmp_path / "b")
    (bundle / "manifest.json").write_text("[1, 2]")
    assert "not a JSON object" in one_error(capsys, "classify", "--bundle", str(bundle), "--labels", "a,b", image)


def test_bit_flipped_tower_is_refused(capsys, tiny_bundle: Path, tmp_path: Path, image: str):
    bundle = copy_bundle(tiny_bundle, tmp_path / "b")
    manifest = json.loads((bundle / "manifest.json").read_text())
    tower = bundle / manifest["image_tower"]
    data = bytearray(tower.read_bytes())
    data[len(data) // 2] ^= 0x01
    tower.write_bytes(bytes(data))
    assert "checksum" in one_error(capsys, "classify", "--bundle", str(bundle), "--labels", "a,b", image)


def test_permuted_index_labels_are_refused(capsys, tiny_bundle: Path, tmp_path: Path, image: str):
    index = tmp_path / "classes.usearch"
    assert main(["index", "build", "--bundle", str(tiny_bundle), "--labels", "red circle,blue square,green star",
                 "--out", str(index)]) == 0
    sidecar = tmp_path / "classes.usearch.json"
    meta = json.loads(sidecar.read_text())
    meta["labels"] = meta["labels"][::-1]
    sidecar.write_text(json.dumps(meta))
    capsys.readouterr()
    assert "checksum" in one_error(capsys, "classify", "--bundle", str(tiny_bundle), "--labels-index", str(index), image)


def test_text_tower_is_optional_with_a_prototype_index(tiny_bundle: Path, tmp_path: Path, image: str, capsys):
    from clipping_edge import ZeroShotClassifier, load

    index = tmp_path / "classes.usearch"
    expected = ZeroShotClassifier(load(tiny_bundle), ["red circle", "blue square", "green star"])
    expected.save_index(index)
    bundle = copy_bundle(tiny_bundle, tmp_path / "device")
    (bundle / json.loads((bundle / "manifest.json").read_text())["text_tower"]).unlink()
    model = load(bundle)
    got = ZeroShotClassifier.from_index(model, index).classify(image, top_k=3)[0]
    assert [p.label for p in got] == [p.label for p in expected.classify([image], top_k=3)[0]]
    assert "no text tower" in one_error(capsys, "classify", "--bundle", str(bundle), "--labels", "a,b", image)


# -- bounded cost ---------------------------------------------------------------------------------

def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels, with one tiny compressed row: a bomb's shape."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * (width + 1))) + chunk(b"IEND", b"")


def test_decompression_bomb_is_one_error(capsys, tiny_bundle: Path, tmp_path: Path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header_only(100_000, 100_000))
    assert "pixel" in one_error(capsys, "classify", "--bundle", str(tiny_bundle), "--labels", "a,b", str(bomb))


def test_extreme_aspect_ratio_is_resized_within_bounded_memory(tmp_path: Path):
    """A 1 x 1 000 000 PNG of 4 kB: resizing the shorter side first would allocate gigabytes."""
    from PIL import Image

    strip = tmp_path / "strip.png"
    Image.new("RGB", (1_000_000, 1), (200, 10, 10)).save(strip)
    # VmHWM, not ru_maxrss, which a child inherits from its parent (pytest here) across fork + exec.
    code = ("from clipping_edge.preprocess import preprocess_image; "
            f"x = preprocess_image({str(strip)!r}, 224); assert x.shape == (3, 224, 224); "
            "print(next(line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM:')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(out.stdout.strip()) < 400_000  # kB: the interpreter, numpy and Pillow, not a 2.5 GB resize


def test_overlong_text_is_cut_before_tokenizing(tiny_bundle: Path):
    from clipping_edge import load

    tokenizer = load(tiny_bundle).tokenizer
    huge = "red circle " * 500_000  # 5.5 MB
    limit = 64 * tokenizer.context_length
    assert np.array_equal(tokenizer([huge], warn=False), tokenizer([huge[:limit]], warn=False))


# -- one error line for every bad input -----------------------------------------------------------

def bad_labels(tmp_path: Path) -> dict[str, tuple[str, str]]:
    (tmp_path / "latin1.txt").write_bytes("caf\xe9\nth\xe9".encode("latin-1"))
    (tmp_path / "string.json").write_text(json.dumps("cat"))
    (tmp_path / "object.json").write_text(json.dumps({"cat": 1, "dog": 2}))
    (tmp_path / "broken.json").write_text("[\"cat\", ")
    return {"latin1.txt": ("UTF-8", str(tmp_path / "latin1.txt")), "string.json": ("list of strings", str(tmp_path / "string.json")),
            "object.json": ("list of strings", str(tmp_path / "object.json")), "broken.json": ("not valid JSON", str(tmp_path / "broken.json")),
            "typo": ("one class", "mylabels")}


def test_bad_label_files(capsys, tiny_bundle: Path, tmp_path: Path, image: str):
    for name, (expected, value) in bad_labels(tmp_path).items():
        assert expected in one_error(capsys, "classify", "--bundle", str(tiny_bundle), "--labels", value, image), name


@pytest.mark.parametrize("argv", [
    ["classify", "--bundle", "B", "--labels", "a,b", "--top-k", "0", "IMG"],
    ["classify", "--bundle", "B", "--labels", "a,b", "--top-k", "-1", "IMG"],
    ["classify", "--bundle", "B", "--labels", "a,b", "--batch-size", "0", "IMG"],
    ["train", "--batch-size", "0"], ["train", "--batch-size", "-4"], ["train", "--workers", "-1"],
    ["train", "--epochs", "0"], ["train", "--teacher-image-size", "0"], ["train", "--lr", "nan"],
    ["train", "--limit", "-5"], ["data", "synth", "--out", "x", "--n-train", "-5"],
    ["data", "synth", "--out", "x", "--image-size", "0"], ["export", "--checkpoint", "c", "--out", "o", "--bogus"],
])
def test_invalid_numbers_are_refused_when_parsed(capsys, argv: list[str]):
    one_error(capsys, *argv)


def test_unknown_device_is_one_error(capsys, small_data: Path, tmp_path: Path):
    assert "--device" in one_error(capsys, "train", "--data", str(small_data), "--out", str(tmp_path / "r"), "--device", "tpu9")


def test_damaged_checkpoints(capsys, tiny_checkpoint: Path, small_data: Path, tmp_path: Path):
    cases = {"empty weights": ("model.safetensors", b""), "truncated weights": ("model.safetensors", None),
             "config not JSON": ("config.json", b"{"), "config not UTF-8": ("config.json", b"\xff\xfe"),
             "config without student": ("config.json", b"{}")}
    for i, (case, (name, data)) in enumerate(cases.items()):
        bad = tmp_path / f"ckpt{i}"
        shutil.copytree(tiny_checkpoint, bad)
        if data is None:
            data = (bad / name).read_bytes()[:1000]
        (bad / name).write_bytes(data)
        one_error(capsys, "export", "--checkpoint", str(bad), "--out", str(tmp_path / f"b{i}"), "--data", str(small_data))
        assert not (tmp_path / f"b{i}").exists(), case


def test_corrupt_image_under_loader_workers_is_one_line(capsys, tmp_path: Path):
    from PIL import Image

    data = tmp_path / "data" / "train"
    (data / "images").mkdir(parents=True)
    rows = ["image,caption"]
    for i in range(8):
        Image.new("RGB", (16, 16), (i * 30, 0, 0)).save(data / "images" / f"{i}.png")
        rows.append(f"images/{i}.png,a red square {i}")
    (data / "images" / "3.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    (data / "captions.csv").write_text("\n".join(rows) + "\n")
    err = one_error(capsys, "train", "--data", str(data), "--out", str(tmp_path / "run"), "--student", "test-tiny",
                    "--method", "clip", "--epochs", "1", "--batch-size", "8", "--workers", "1", "--tokenizer", "captions")
    assert "3.png" in err


def test_train_out_that_is_a_file(capsys, small_data: Path, tmp_path: Path):
    out = tmp_path / "run"
    out.write_text("a file")
    one_error(capsys, "train", "--data", str(small_data), "--out", str(out), "--student", "test-tiny", "--method", "clip",
              "--epochs", "1", "--workers", "0")
    assert out.read_text() == "a file"


def test_machine_errors_are_one_line():
    full = OSError(errno.ENOSPC, "No space left on device", "/data/out/model.onnx")
    assert "disk is full" in user_error(full, "export") and "/data/out/model.onnx" in user_error(full, "export")
    assert "permission denied" in user_error(PermissionError(errno.EACCES, "Permission denied", "/ro/x"), "export")
    missing = ModuleNotFoundError("No module named 'torch'", name="torch")
    assert "pip install" in user_error(missing, "train")
    assert user_error(RuntimeError("a bug"), "train") is None  # our own bugs keep their traceback


def test_ctrl_c_is_interrupted_exit_130(capsys, monkeypatch):
    import clipping_edge.cli as cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "cmd_info", interrupted)
    assert main(["info", "x"]) == 130
    assert capsys.readouterr().err.strip() == "interrupted"


@pytest.mark.parametrize("command", [["train", "--epochs", "1"], ["export", "--checkpoint", "c", "--out", "o"],
                                     ["eval", "--checkpoint", "c"], ["demo", "--out", "d"]])
def test_device_install_without_torch_names_the_extra(command: list[str], tmp_path: Path):
    code = ("import sys; sys.modules['torch'] = None; from clipping_edge.cli import main; "
            f"sys.exit(main({command!r}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.count("error:") == 1 and "pip install" in result.stderr


def test_api_rejects_wrong_shapes(tiny_bundle: Path):
    from clipping_edge import ZeroShotClassifier, load

    model = load(tiny_bundle)
    with pytest.raises(ClippingEdgeError, match="shape"):
        model.encode_pixels(np.zeros((2, 3, 5, 5), np.float32))
    classifier = ZeroShotClassifier(model, ["a", "b"])
    with pytest.raises(ClippingEdgeError, match="shape"):
        classifier.classify_embeddings(np.zeros((2, 7), np.float32))
    with pytest.raises(ClippingEdgeError, match="top_k"):
        classifier.classify_embeddings(np.zeros((1, model.manifest.embed_dim), np.float32), top_k=0)


def test_usearch_imported_first_is_safe_or_one_clear_error(tiny_bundle: Path, image: str):
    """usearch's wheel carries a static libstdc++ that crashed onnxruntime when usearch loaded first."""
    after = (f"import clipping_edge, usearch.index; m = clipping_edge.load({str(tiny_bundle)!r}); "
             f"print(m.encode_image([{image!r}]).shape)")
    assert subprocess.run([sys.executable, "-c", after], capture_output=True, text=True).returncode == 0
    before = (f"import usearch.index, clipping_edge; m = clipping_edge.load({str(tiny_bundle)!r})\n"
              f"try:\n  m.encode_image([{image!r}])\nexcept clipping_edge.ClippingEdgeError as e:\n  print('clear', e)")
    result = subprocess.run([sys.executable, "-c", before], capture_output=True, text=True)
    assert result.returncode == 0 and "clear" in result.stdout, (result.returncode, result.stderr[-500:])


# -- narrow windows closed ------------------------------------------------------------------------

def test_a_crash_between_the_two_renames_is_recovered(tmp_path: Path):
    from clipping_edge.atomic import atomic_directory, recover

    target = tmp_path / "out"
    with atomic_directory(target, "dataset") as tmp:
        (tmp / "v").write_text("1")
    # as if killed after moving the old one aside and before moving the new one in
    with atomic_directory(tmp_path / "scratch", "dataset") as tmp:
        (tmp / "v").write_text("2")
    target.rename(tmp_path / ".out.old")
    (tmp_path / "scratch").rename(tmp_path / ".out.new")
    recover(target)
    assert (target / "v").read_text() == "2" and not (tmp_path / ".out.old").exists()


def test_a_writer_paused_between_its_renames_is_not_undone_by_another(tmp_path: Path):
    """Writer A has moved its finished output to .out.new and is about to rename it to out; writer B (export
    --force) starts now. B must wait for A's swap, then replace A's output with its own: one output at the end."""
    import threading

    from clipping_edge.atomic import atomic_directory, swap_lock

    target = tmp_path / "out"
    with atomic_directory(tmp_path / "a", "dataset") as tmp:
        (tmp / "v").write_text("A")
    errors: list[BaseException] = []

    def writer_b():
        try:
            with atomic_directory(target, "dataset", force=True) as tmp:
                (tmp / "v").write_text("B")
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    with swap_lock(target):  # A, mid-swap
        (tmp_path / "a").rename(tmp_path / ".out.new")
        b = threading.Thread(target=writer_b)
        b.start()
        b.join(timeout=1.0)
        (tmp_path / ".out.new").rename(target)  # A's second rename: B must not have taken .out.new meanwhile
    b.join(timeout=30)
    assert not errors and (target / "v").read_text() == "B"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no lock file either


def test_stale_temp_siblings_are_removed_and_umask_honoured(tmp_path: Path):
    from clipping_edge.atomic import atomic_directory

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".out.{dead.stdout.strip()}.abc.tmp"
    stale.mkdir()
    old = os.umask(0o022)
    try:
        with atomic_directory(tmp_path / "out", "dataset") as tmp:
            (tmp / "f").write_text("x")
    finally:
        os.umask(old)
    assert not stale.exists()
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o755


def test_index_written_halfway_is_rolled_forward(tiny_bundle: Path, tmp_path: Path):
    from clipping_edge import PrototypeIndex, ZeroShotClassifier, load

    model = load(tiny_bundle)
    path = tmp_path / "c.usearch"
    ZeroShotClassifier(model, ["red circle", "blue square"]).save_index(path)
    newer = ZeroShotClassifier(model, ["red circle", "blue square", "green star"])
    real_replace = os.replace

    def crash(src, dst):
        if str(dst) == str(path):
            raise KeyboardInterrupt  # killed between the sidecar and the index
        return real_replace(src, dst)

    import clipping_edge.index as index_module

    index_module.os.replace = crash
    try:
        with pytest.raises(KeyboardInterrupt):
            newer.save_index(path)
    finally:
        index_module.os.replace = real_replace
    assert PrototypeIndex.load(path, model.manifest.fingerprint).labels == ["red circle", "blue square", "green star"]


def test_torn_log_line_does_not_break_resume(tiny_checkpoint: Path, small_data: Path, tmp_path: Path):
    from clipping_edge.training.config import TrainConfig
    from clipping_edge.training.trainer import train

    run = tmp_path / "run"
    shutil.copytree(tiny_checkpoint, run / "checkpoint")
    epochs = json.loads((run / "checkpoint" / "config.json").read_text())["epoch"]
    (run / "log.jsonl").write_text("".join(json.dumps({"epoch": e}) + "\n" for e in range(1, epochs + 1)) + '{"epoch": 9')
    train(TrainConfig(data=str(small_data), out=str(run), student="test-tiny", method="clip", epochs=epochs + 1,
                      batch_size=64, lr=3e-3, warmup_steps=20, workers=0, resume=True))
    lines = (run / "log.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == list(range(1, epochs + 2))


# -- issue 35: wrong answers and data loss found by trying the CLI and API ------------------------------

def test_a_lone_string_is_one_item_never_its_characters(tiny_bundle: Path):
    from clipping_edge import ZeroShotClassifier, load
    from clipping_edge.classifier import class_prototypes

    model = load(tiny_bundle)
    assert ZeroShotClassifier(model, "red circle").labels == ["red circle"]
    one_template = class_prototypes(model, ["red circle"], "a photo of a {}.")
    assert np.allclose(one_template, class_prototypes(model, ["red circle"], ["a photo of a {}."]))
    one_name = class_prototypes(model, ["red circle"], ["{}"], {"red circle": "crimson circle"})
    assert np.allclose(one_name, class_prototypes(model, ["red circle"], ["{}"], {"red circle": ["crimson circle"]}))


@pytest.mark.parametrize("template", ["{} and {}", "a photo of {name}", "a photo of { }", "a {photo} of {}", "{{}}"])
def test_templates_have_one_rule(capsys, tiny_bundle: Path, tmp_path: Path, image: str, template: str):
    from clipping_edge import ZeroShotClassifier, load

    with pytest.raises(ClippingEdgeError, match="template"):
        ZeroShotClassifier(load(tiny_bundle), ["red circle", "blue square"], [template])
    path = tmp_path / "templates.txt"
    path.write_text(template + "\n")
    assert "template" in one_error(capsys, "classify", "--bundle", str(tiny_bundle), "--labels", "red circle,blue square",
                                   "--templates", str(path), image)


def test_export_with_empty_labels_is_refused_before_converting(capsys, tiny_checkpoint: Path, small_data: Path,
                                                                tmp_path: Path, monkeypatch):
    import clipping_edge.export.bundle as export_bundle_module

    monkeypatch.setattr(export_bundle_module, "load_student", lambda *_: pytest.fail("the export started"))
    for labels in ("", " , ", "red circle,red circle"):
        err = one_error(capsys, "export", "--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "b"),
                        "--data", str(small_data), "--labels", labels)
        assert "class" in err or "repeats" in err
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("epoch", [10**18, -3, 1.5, float("inf"), True])
def test_resume_refuses_an_impossible_epoch(capsys, tiny_checkpoint: Path, small_data: Path, tmp_path: Path, epoch):
    run = tmp_path / "run"
    shutil.copytree(tiny_checkpoint, run / "checkpoint")
    state = run / "checkpoint" / "trainer_state.json"
    data = json.loads(state.read_text())
    keys = [k for _, k in data["__keys__"]]
    data["values"][keys.index("epoch")] = epoch
    state.write_text(json.dumps(data))
    err = one_error(capsys, "train", "--data", str(small_data), "--out", str(run), "--student", "test-tiny", "--method",
                    "clip", "--epochs", "20", "--resume", "--workers", "0", "--batch-size", "64", "--tokenizer", "captions")
    assert "epoch" in err


def test_sixteen_bit_images_are_refused_not_darkened(capsys, tiny_bundle: Path, tmp_path: Path):
    from PIL import Image

    from clipping_edge.preprocess import preprocess_image

    dark = tmp_path / "scan.png"
    Image.fromarray((np.arange(64 * 64).reshape(64, 64) % 4096).astype(np.uint16)).save(dark)
    assert Image.open(dark).mode == "I;16"
    with pytest.raises(ClippingEdgeError, match="16-bit"):
        preprocess_image(str(dark), 32)
    assert "16-bit" in one_error(capsys, "classify", "--bundle", str(tiny_bundle), "--labels", "red circle,blue square",
                                 str(dark))


def test_train_out_with_look_alike_files_is_not_taken_for_a_run(capsys, small_data: Path, tmp_path: Path):
    users = tmp_path / "mine"
    users.mkdir()
    for name in ("log.jsonl", "metrics.json", "tokenizer.json"):
        (users / name).write_text("{\"mine\": true}\n")
    before = snapshot(users)
    err = one_error(capsys, "train", "--data", str(small_data), "--out", str(users), "--student", "test-tiny",
                    "--method", "clip", "--epochs", "1", "--workers", "0")
    assert "--force" in err and snapshot(users) == before


def test_look_alike_files_never_make_a_folder_ours(tmp_path: Path):
    from clipping_edge.atomic import check_replaceable

    cases = {"bundle": ["manifest.json"], "checkpoint": ["model.safetensors", "config.json"], "dataset": ["dataset.json"]}
    for kind, names in cases.items():
        folder = tmp_path / kind
        folder.mkdir()
        for name in names:
            (folder / name).write_text("{}")
        with pytest.raises(ClippingEdgeError, match="--force"):
            check_replaceable(folder, kind)


def test_sixteen_bit_precisions_are_refused_for_a_top_k_head_before_converting(tmp_path: Path):
    from clipping_edge.export.targets import TARGETS
    from clipping_edge.export.towers import ImageTower
    from clipping_edge.training.config import student_config
    from clipping_edge.training.models import Student

    cfg = student_config("test-tiny-pretrained")
    cfg.vision.head_temperature, cfg.vision.head_top_k = 2.0, 5
    cfg.text.vocab_size, cfg.text.eot_id = 30522, 102
    tower = ImageTower(Student(cfg))
    sixteen = {f"{t.name} {name}" for t in TARGETS.values() for name, spec in t.precisions.items() if spec.sixteen_bit}
    assert {"onnx fp16", "openvino fp16", "coreml fp16"} <= sixteen
    assert "fp32 or an int8" in tower.refusal(True) and tower.refusal(False) is None
    cfg.vision.head_top_k = 0
    assert ImageTower(Student(cfg)).refusal(True) is None


@pytest.mark.parametrize("changes,expected", [
    ({"image_size": 48}, "graph takes"), ({"context_length": 7}, "graph takes"), ({"embed_dim": 31}, "graph takes"),
    ({"quantization": {"image": ["int8"]}}, "quantization"), ("swap", "graph takes")])
def test_a_manifest_that_does_not_belong_to_its_graph_is_one_error(tiny_bundle: Path, tmp_path: Path, image: str,
                                                                    changes, expected):
    """One load-time check of the manifest against the graph's own shapes, for every backend that reports them."""
    from clipping_edge import ZeroShotClassifier, load
    from clipping_edge.manifest import file_sha256

    bundle = copy_bundle(tiny_bundle, tmp_path / "b")
    if changes == "swap":
        manifest = json.loads((bundle / "manifest.json").read_text())
        changes = {"image_tower": manifest["text_tower"], "text_tower": manifest["image_tower"]}
    edit_manifest(bundle, **changes)
    with pytest.raises(ClippingEdgeError, match=expected) as raised:
        ZeroShotClassifier(load(bundle), ["red circle", "blue square"]).classify(image)
    assert "\n" not in str(raised.value)
    assert file_sha256(bundle / "image.onnx") == file_sha256(tiny_bundle / "image.onnx")


def test_api_misuse_is_a_clear_error_not_an_index_error(tiny_bundle: Path, small_data: Path, tmp_path: Path):
    from clipping_edge import ZeroShotClassifier, load
    from clipping_edge.gallery import ImageGallery

    model = load(tiny_bundle)
    classifier = ZeroShotClassifier(model, ["red circle", "blue square"])
    for bad in (np.zeros((8, 8, 5), np.uint8), np.zeros((0, 0, 3), np.uint8), [None], 3.5):
        with pytest.raises(ClippingEdgeError):
            classifier.classify(bad)
    with pytest.raises(ClippingEdgeError, match="batch_size"):
        classifier.classify(np.zeros((8, 8, 3), np.uint8), batch_size=0)
    gallery = ImageGallery.create(model)
    for k in (0, -1):
        with pytest.raises(ClippingEdgeError, match="k must be"):
            gallery.search_text(model, ["red circle"], k=k)


@pytest.mark.parametrize("case", ["no arrays", "outside", "dev zero", "ragged", "tolerance text", "golden outside"])
def test_malformed_golden_files_are_one_error(capsys, tiny_bundle: Path, tmp_path: Path, case: str):
    from clipping_edge.manifest import file_sha256

    bundle = copy_bundle(tiny_bundle, tmp_path / "b")
    golden_path = bundle / "golden" / "golden.json"
    golden = json.loads(golden_path.read_text())
    if case == "no arrays":
        del golden["arrays"]
    elif case == "outside":
        golden["arrays"]["pixels"]["file"] = "../../../../etc/passwd"
    elif case == "dev zero":
        golden["arrays"]["pixels"]["file"] = "/dev/zero"
    elif case == "ragged":
        (bundle / "golden" / golden["arrays"]["pixels"]["file"]).write_bytes(b"\0" * 10)
    elif case == "tolerance text":
        golden["tolerances"]["pixels_max_abs"] = "small"
    golden_path.write_text(json.dumps(golden))
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["files"]["golden"] = file_sha256(bundle / "golden")
    if case == "golden outside":
        manifest["golden"] = "../../elsewhere/golden.json"
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    one_error(capsys, "verify", str(bundle))


@pytest.mark.parametrize("chunk", [b"zTXt", b"iCCP"])
def test_metadata_chunk_bombs_are_one_error(capsys, tiny_bundle: Path, tmp_path: Path, chunk: bytes):
    """A tiny PNG whose compressed text or colour-profile chunk inflates to 200 MB: refused, never inflated."""
    from PIL import Image

    from clipping_edge.preprocess import load_image

    plain = tmp_path / "plain.png"
    Image.new("RGB", (8, 8), (200, 30, 30)).save(plain)
    data = plain.read_bytes()
    payload = b"Comment\0\0" + zlib.compress(b"\0" * 200_000_000, 9) if chunk == b"zTXt" else \
        b"profile\0\0" + zlib.compress(b"\0" * 200_000_000, 9)
    bomb_chunk = struct.pack(">I", len(payload)) + chunk + payload + struct.pack(">I", zlib.crc32(chunk + payload) & 0xFFFFFFFF)
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(data[:33] + bomb_chunk + data[33:])  # after the signature and IHDR
    with pytest.raises(ClippingEdgeError):
        load_image(str(bomb))
    one_error(capsys, "classify", "--bundle", str(tiny_bundle), "--labels", "red circle,blue square", str(bomb))


def test_a_bundle_left_between_its_two_renames_is_found(tiny_bundle: Path, tmp_path: Path, image: str):
    from clipping_edge import ZeroShotClassifier, load

    shutil.copytree(tiny_bundle, tmp_path / ".bundle.new")  # what a crash after the first rename leaves
    model = load(tmp_path / "bundle")
    assert (tmp_path / "bundle" / "manifest.json").is_file() and not (tmp_path / ".bundle.new").exists()
    assert ZeroShotClassifier(model, ["red circle", "blue square"]).classify(image)


def test_bad_training_inputs_are_one_error(capsys, tiny_checkpoint: Path, small_data: Path, tmp_path: Path):
    """Malformed captions, zero-shot tasks, student files and resume states (issue 35 item 10)."""
    from safetensors.torch import load_file, save_file

    def train(*extra: str, data: Path = small_data, out: Path | None = None) -> str:
        return one_error(capsys, "train", "--data", str(data), "--out", str(out or tmp_path / "out"), "--student",
                         "test-tiny", "--method", "clip", "--epochs", "20", "--workers", "0", "--batch-size", "64",
                         "--tokenizer", "captions", *extra)

    jsonl = tmp_path / "jsonl" / "train"
    jsonl.mkdir(parents=True)
    (jsonl / "captions.jsonl").write_text('{"image": "a.png", "caption": "a red circle"}\n["a list"]\n')
    assert "line 2" in train(data=jsonl.parent)
    for body, expected in (("{", "not valid"), ('{"templates": ["{}"]}', "classes")):
        bad = tmp_path / f"zs{len(body)}"
        shutil.copytree(small_data, bad)
        (bad / "test" / "zeroshot.json").write_text(body)
        assert expected in train(data=bad)
    for body in ("{garbage", json.dumps({"name": "x", "colour": "red"}), "[1, 2]"):
        student = tmp_path / f"student{len(body)}.json"
        student.write_text(body)
        assert "student file" in one_error(capsys, "train", "--data", str(small_data), "--out", str(tmp_path / "s"),
                                            "--student", str(student))

    def resume_with(name: str, change) -> str:
        run = tmp_path / f"run-{name}"
        shutil.copytree(tiny_checkpoint, run / "checkpoint")
        change(run / "checkpoint")
        return train("--resume", out=run)

    resume_with("truncated-weights", lambda c: (c / "model.safetensors").write_bytes((c / "model.safetensors").read_bytes()[:500]))
    resume_with("truncated-state", lambda c: (c / "trainer_state.safetensors").write_bytes(
        (c / "trainer_state.safetensors").read_bytes()[:300]))
    resume_with("deleted-state", lambda c: (c / "trainer_state.safetensors").unlink())
    resume_with("huge-header", lambda c: (c / "trainer_state.safetensors").write_bytes(struct.pack("<Q", 2 ** 62) + b"{}"))

    def wrong_moment(c: Path) -> None:
        tensors = load_file(str(c / "trainer_state.safetensors"))
        key = next(k for k in tensors if k.endswith("exp_avg"))
        tensors[key] = tensors[key].flatten()[:3].contiguous()
        save_file(tensors, str(c / "trainer_state.safetensors"))
    assert "does not fit" in resume_with("moment", wrong_moment)


# -- a full disk ------------------------------------------------------------------------------------

@pytest.fixture()
def full_disk(tmp_path: Path):
    """A real file system with a few KiB free (a 1 MiB tmpfs, filled); needs root, as CI and this machine have."""
    mount = tmp_path / "full"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("mounting a small tmpfs needs root: the full-disk cases run in CI and on the project's machines")
    try:
        with open(mount / "filler", "wb") as f:  # leave 8 KiB: enough for a marker, not for a tokenizer or an index
            f.write(b"\0" * (shutil.disk_usage(mount).free - 8192))
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_is_one_error_and_leaves_nothing_half_written(capsys, tiny_bundle: Path, small_data: Path,
                                                                     full_disk: Path):
    labels = ",".join(f"class number {i}" for i in range(300))  # ~300 KiB of f32 prototypes: more than is free
    err = one_error(capsys, "index", "build", "--bundle", str(tiny_bundle), "--labels", labels, "--out", str(full_disk / "c"))
    assert "disk is full" in err and str(full_disk / "c") in err
    # no .pending, no .tmp sibling (the empty lock file stays, as after every write: removing it would race)
    assert sorted(p.name for p in full_disk.iterdir()) == [".c.usearch.lock", "filler"]

    err = one_error(capsys, "train", "--data", str(small_data), "--out", str(full_disk / "run"), "--student", "test-tiny",
                    "--method", "clip", "--epochs", "1", "--workers", "0")
    assert "disk is full" in err
    assert not [p for p in full_disk.rglob("*") if p.name.startswith("tokenizer") or p.suffix == ".tmp"]


def test_a_write_that_fails_removes_its_temporary_file(tmp_path: Path):
    from clipping_edge.atomic import atomic_file

    with pytest.raises(OSError, match=str(tmp_path / "out.json")):
        with atomic_file(tmp_path / "out.json") as tmp:
            tmp.write_text("half")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert list(tmp_path.iterdir()) == []


def test_a_label_list_longer_than_any_file_name_is_a_list():
    from clipping_edge.cli_args import read_labels as _read_labels

    labels = [f"class number {i}" for i in range(300)]
    assert _read_labels(",".join(labels)) == labels


def test_ctrl_c_inside_usearch_is_an_interrupt_not_a_runtime_error():
    """usearch polls for Ctrl-C inside add/search and raises RuntimeError('Operation has been terminated'): 2 of
    12 interrupted `index add` runs ended in that traceback before (see the closing note's script)."""
    from clipping_edge.index import interruptible

    with pytest.raises(KeyboardInterrupt):
        with interruptible():
            raise RuntimeError("Operation has been terminated")
    with pytest.raises(RuntimeError, match="other"):  # usearch's other failures stay what they are
        with interruptible():
            raise RuntimeError("other")


def test_an_index_into_a_read_only_folder_is_one_clear_error(capsys, tiny_bundle: Path, tmp_path: Path):
    """Item 11: `save_index` into a folder that cannot be written (a read-only mount: root writes through plain
    permissions) raises the project's error naming the index, and the CLI says it in one line."""
    import clipping_edge

    folder = tmp_path / "ro"
    folder.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)], capture_output=True).returncode:
        pytest.skip("mounting a read-only tmpfs needs root: this case runs in CI and on the project's machines")
    try:
        classifier = clipping_edge.ZeroShotClassifier(clipping_edge.load(tiny_bundle), ["red circle", "blue square"])
        with pytest.raises(ClippingEdgeError, match=r"cannot write the index .*x\.usearch .*choose a folder"):
            classifier.save_index(folder / "x.usearch")
        err = one_error(capsys, "index", "build", "--bundle", str(tiny_bundle), "--labels", "red circle,blue square",
                        "--out", str(folder / "x.usearch"))
        assert "read-only file system" in err and str(folder) in err
    finally:
        subprocess.run(["umount", str(folder)], check=True)
