"""Students that know the real world: the open vocabulary, towers initialised from the packaged teachers,
locking (LiT) with its feature cache, and a pretrained-init student through every runtime that runs here."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from clipping_edge.errors import ClippingEdgeError
from clipping_edge.training.config import TrainConfig, student_config
from clipping_edge.training.models import Student
from clipping_edge.training.tokenizer_packaged import packaged_tokenizer


@pytest.fixture(scope="module")
def minilm_tokenizer(tmp_path_factory: pytest.TempPathFactory):
    return packaged_tokenizer("minilm", 16, tmp_path_factory.mktemp("tok") / "tokenizer.json")


def pretrained_student(tokenizer, depth: int = 0) -> Student:
    cfg = student_config("test-tiny-pretrained")
    cfg.text.vocab_size, cfg.text.eot_id, cfg.text.depth = tokenizer.vocab_size, tokenizer.eot_id, depth
    return Student(cfg).eval()


def test_open_vocabulary_matches_the_teachers_wordpiece(minilm_tokenizer):
    from transformers import AutoTokenizer

    from clipping_edge.training.teachers import minilm_folder

    reference = AutoTokenizer.from_pretrained(minilm_folder())
    texts = ["a photo of an astronaut", "Café au lait, ÉTÉ!", "a cat", "man with a camera"]
    ids = minilm_tokenizer(texts)
    for row, text in zip(ids, texts):
        expected = reference(text)["input_ids"]
        assert row[:len(expected)].tolist() == expected and not row[len(expected):].any()
        assert reference.decode(row[1:len(expected) - 1].tolist()) == reference.decode(expected[1:-1])
    # whole words, not letters: the caption-trained BPE spelled "cat" as c-a-t
    assert minilm_tokenizer.tokenizer.encode("cat astronaut", add_special_tokens=False).tokens[:2] == ["cat", "astronaut"]


def test_initialised_towers_are_the_teachers(minilm_tokenizer):
    from clipping_edge.training.teachers import load_image_teacher, load_text_teacher

    student = pretrained_student(minilm_tokenizer)
    pixels = torch.rand(3, 3, 32, 32)
    texts = ["a photo of a cat", "a red circle next to a blue square"]
    with torch.no_grad():
        image = F.normalize(student.visual.features(pixels), dim=-1)
        text = F.normalize(student.text.features(torch.from_numpy(minilm_tokenizer(texts))), dim=-1)
    torch.testing.assert_close(image, load_image_teacher("efficientnet-lite0", 32).encode(pixels), atol=1e-4, rtol=0)
    torch.testing.assert_close(text, load_text_teacher("minilm").encode(texts), atol=1e-4, rtol=0)


def test_lock_freezes_all_but_the_projection_and_unlocked_blocks(minilm_tokenizer):
    from clipping_edge.training.locking import lock_tower, unlockable_blocks

    student = pretrained_student(minilm_tokenizer, depth=2)
    frozen = lock_tower(student.visual, 0)
    assert [n for n, p in student.visual.named_parameters() if p.requires_grad] == ["proj.weight"]
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in frozen)
    lock_tower(student.text, 1)
    trainable = {n.split(".")[3] for n, p in student.text.named_parameters() if p.requires_grad and n.startswith("encoder.encoder")}
    assert trainable == {"1"} and len(unlockable_blocks(student.text)) == 2


def tiny_locked_run(small_data: Path, out: Path, **overrides) -> TrainConfig:
    settings = dict(data=str(small_data), out=str(out), student="test-tiny-pretrained", method="clip", epochs=1,
                    batch_size=64, lr=1e-3, warmup_steps=2, workers=0, limit=256, lock_image=True)
    return TrainConfig(**(settings | overrides))


def test_locked_tower_stays_unchanged_and_cache_gives_the_live_loss(small_data: Path, tmp_path: Path):
    from clipping_edge.training.trainer import Trainer

    # The validation curve: every epoch, both sets, on their val split (test stands in: this set has none).
    run = tiny_locked_run(small_data, tmp_path / "run", epochs=2, eval_every=1, eval_data=f"{small_data},{small_data}+{small_data}")
    trainer = Trainer(run)
    assert trainer.locked_cache is not None and trainer.locked_cache[0] is not None
    before = {k: v.clone() for k, v in trainer.model.student.visual.state_dict().items() if not k.startswith("proj")}
    trainer.fit()
    after = trainer.model.student.visual.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items()), "a locked weight or BN statistic moved"
    curve = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in curve] == [1, 2]
    assert all(0 <= r[f"{small_data.name}/zero_shot_top1"] <= 1 and f"{small_data.name}/image_to_text_R@1" in r for r in curve)

    # Evaluating the locked tower from its cache scores as the live tower does.
    from clipping_edge.training.data.pairs import read_pairs, resolve_split
    from clipping_edge.training.evaluate import evaluate

    test_pairs = read_pairs(resolve_split(small_data, "test"), limit=200)
    live = evaluate(trainer.model.student, trainer.tokenizer, test_pairs)
    from_cache = evaluate(trainer.model.student, trainer.tokenizer, test_pairs, locked=(True, False))
    assert abs(from_cache["zero_shot_top1"] - live["zero_shot_top1"]) <= 0.01
    assert abs(from_cache["image_to_text_R@1"] - live["image_to_text_R@1"]) <= 0.01

    # The cached features of the plain (evaluation) view give the live forward's embeddings and loss.
    from clipping_edge.preprocess import preprocess_batch

    model = trainer.model.eval()
    rows = torch.arange(8)
    pixels = torch.from_numpy(preprocess_batch([trainer.pairs.pairs[i].source() for i in rows], 32))
    ids = torch.from_numpy(trainer.tokenizer([trainer.pairs.pairs[i].caption for i in rows]))
    with torch.no_grad():
        live = model(pixels, ids, 1, 1)
        cached = model(pixels, ids, 1, 1, image_features=trainer.locked_cache[0][rows])
        losses = [trainer.objective(trainer_embeddings(out), None)["loss"] for out in (live, cached)]
    torch.testing.assert_close(cached["image"], live["image"], atol=2e-3, rtol=0)
    torch.testing.assert_close(losses[0], losses[1], atol=2e-3, rtol=0)


def test_a_fixed_logit_scale_stays_fixed_while_the_projections_train(small_data: Path, tmp_path: Path):
    from clipping_edge.training.trainer import Trainer

    trainer = Trainer(tiny_locked_run(small_data, tmp_path / "run", logit_scale=5.0))
    before = trainer.model.student.visual.proj.weight.detach().clone()
    trainer.fit()
    student = trainer.model.student
    assert student.logit_scale.exp().item() == pytest.approx(5.0, abs=1e-5)
    assert not torch.equal(before, student.visual.proj.weight), "nothing trained"
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert log[-1]["logit_scale"] == 5.0
    with pytest.raises(ClippingEdgeError, match="--logit-scale 200 is above"):
        Trainer(tiny_locked_run(small_data, tmp_path / "bad", logit_scale=200.0))


def test_a_locked_image_tower_that_is_the_teacher_takes_the_teachers_image_rows(small_data: Path, tmp_path: Path):
    """CLIP-PING with the image tower initialised from the image teacher and locked at the teacher's resolution:
    the locked tower's cache copies the teacher bank's image rows instead of extracting them again."""
    from clipping_edge.training.banks import build_banks, reproduces_rows
    from clipping_edge.training.data.transforms import EvalTransform, ImageCaptionDataset
    from clipping_edge.training.locking import image_tower_as_teacher, no_text_teacher
    from clipping_edge.training.trainer import Trainer

    trainer = Trainer(tiny_locked_run(small_data, tmp_path / "run", method="clip-ping", teacher_image_size=32, limit=96))
    tower = image_tower_as_teacher(trainer.model.student.visual.eval(), 32)
    cache = build_banks(trainer.pairs, tower, no_text_teacher())  # the one the trainer built
    assert cache.reused and cache.stats["image_rows_from"] == str(trainer.banks.path)
    assert trainer.banks.stats["image_rows_from"] is None  # the first bank of these pairs was extracted
    dataset = ImageCaptionDataset(trainer.pairs.pairs[-16:], EvalTransform(32))  # rows the probe did not look at
    with torch.no_grad():
        live = tower.encode(torch.stack([dataset[i][0] for i in range(16)]))
    torch.testing.assert_close(torch.from_numpy(cache.image[-16:].astype(np.float32)), live, atol=2e-3, rtol=4e-3)
    torch.testing.assert_close(trainer.locked_cache[0][-16:], live, atol=2e-3, rtol=4e-3)
    assert not reproduces_rows(tower, trainer.pairs, cache.image * np.float16(1.02), torch.device("cpu"))


def trainer_embeddings(out):
    from clipping_edge.training.trainer import as_embeddings

    return as_embeddings(out)


def test_labels_with_untrained_pieces_get_one_warning(small_data: Path, tmp_path: Path):
    """A text tower trained from scratch on shape captions with the open vocabulary never saw 'astronaut'."""
    from clipping_edge.export.bundle import export_bundle
    from clipping_edge.training.trainer import train

    from clipping_edge import ZeroShotClassifier, load
    from clipping_edge.classifier import untrained_pieces

    checkpoint = train(TrainConfig(data=str(small_data), out=str(tmp_path / "run"), student="test-tiny", method="clip",
                                   epochs=1, batch_size=64, workers=0, limit=128))
    model = load(export_bundle(checkpoint, tmp_path / "bundle", "onnx", "none", str(small_data))[0])
    assert model.manifest.trained_token_ids, "a text tower trained from scratch records what it saw"
    found = untrained_pieces(model, ["red circle", "astronaut"])
    assert list(found) == ["astronaut"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ZeroShotClassifier(model, ["red circle", "astronaut"])
    assert len(caught) == 1 and "astronaut" in str(caught[0].message) and "red circle" not in str(caught[0].message)


def tiny_head_student(tmp_path: Path) -> str:
    """test-tiny-pretrained reading its ImageNet head's 5 most probable classes, as a JSON path."""
    import json

    cfg = student_config("test-tiny-pretrained").to_json()
    cfg["vision"]["head_temperature"], cfg["vision"]["head_top_k"] = 2.0, 5
    path = tmp_path / "tiny-head.json"
    path.write_text(json.dumps(cfg))
    return str(path)


def test_head_tower_and_anchors_with_a_locked_text_tower(small_data: Path, tmp_path: Path):
    """Before training the head tower's features are the teacher's 5 largest ImageNet probabilities at its temperature;
    each anchor is a one-hot class row paired with fixed captions whose cached features are the locked text
    tower's own, and no Fashion-MNIST class is among them."""
    from clipping_edge.training.anchors import ANCHOR_CAPTIONS_PER_CLASS, fashion_mnist_names, imagenet_classes
    from clipping_edge.training.teachers import efficientnet_lite_network
    from clipping_edge.training.trainer import Trainer

    trainer = Trainer(tiny_locked_run(small_data, tmp_path / "run", student=tiny_head_student(tmp_path), lock_text=True,
                                      anchors="imagenet", limit=128))
    student = trainer.model.student.eval()
    pixels = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        teacher = efficientnet_lite_network("lite0").eval()
        expected = (teacher(pixels * 2 - 1) / 2.0).softmax(-1)
        top = expected.topk(5, dim=-1)
        expected = torch.zeros_like(expected).scatter_(1, top.indices, top.values)
        torch.testing.assert_close(student.visual.features(pixels), expected, atol=1e-5, rtol=0)

    image_cache, text_cache = trainer.locked_cache
    assert len(image_cache) == len(text_cache) == len(trainer.dataset)
    anchors = image_cache[128:]
    assert torch.equal(anchors.sum(1), torch.ones(len(anchors))) and torch.equal(anchors.max(1).values, anchors.sum(1))
    classes = anchors.argmax(1).tolist()
    assert 900 < len(set(classes)) == len(classes) < 1000
    names = {n.lower() for c in classes for n in imagenet_classes()[c][0]}
    assert names and not names & fashion_mnist_names()
    # A class's text row is the normalised mean of the live tower's features of its fixed captions.
    captions = trainer.dataset.captions[0]
    assert trainer.dataset[128][1][0] in captions and len(captions) == min(ANCHOR_CAPTIONS_PER_CLASS, len(captions))
    with torch.no_grad():
        live = F.normalize(student.text.features(torch.from_numpy(trainer.tokenizer(captions))), dim=-1)
    torch.testing.assert_close(text_cache[128], F.normalize(live.mean(0), dim=-1), atol=2e-3, rtol=0)  # fp16 cache
    trainer.fit()
    assert np.isfinite(json_lines(tmp_path / "run" / "log.jsonl")[-1]["loss"])


def test_clip_ping_mines_anchors_from_their_own_bank_rows(small_data: Path, tmp_path: Path):
    """With clip-ping each anchor gets feature-bank rows: the image teacher's normalised ImageNet head row of its
    class and the text teacher's prompt ensemble of its fixed captions; mining and training then cover them."""
    from clipping_edge.training.anchors import fashion_mnist_names, imagenet_classes
    from clipping_edge.training.teachers import efficientnet_lite_network, load_text_teacher
    from clipping_edge.training.trainer import Trainer

    run = tiny_locked_run(small_data, tmp_path / "run", method="clip-ping", lock_text=True, anchors="imagenet",
                          teacher_image_size=32, limit=128)
    trainer = Trainer(run)
    kept = [c for c, (names, _) in enumerate(imagenet_classes()) if not {n.lower() for n in names} & fashion_mnist_names()]
    assert len(trainer.banks) == len(trainer.dataset) == 128 + len(kept)
    head = efficientnet_lite_network("lite0")._fc.weight.detach()
    torch.testing.assert_close(torch.from_numpy(trainer.banks.image[128:].astype(np.float32)),
                               F.normalize(head[kept], dim=-1), atol=2e-3, rtol=0)  # fp16 bank
    captions = trainer.dataset.captions[5]
    teacher = F.normalize(load_text_teacher("minilm").encode(captions).mean(0), dim=-1)
    torch.testing.assert_close(torch.from_numpy(trainer.banks.text[128 + 5].astype(np.float32)), teacher, atol=2e-3, rtol=0)
    trainer.fit()
    assert trainer.guide.mined.image_nn.shape[0] == len(trainer.dataset)
    assert int(trainer.guide.mined.text_nn.max()) < len(trainer.dataset)
    record = json_lines(tmp_path / "run" / "log.jsonl")[-1]
    assert all(np.isfinite(record[k]) for k in ("loss", "nn", "xnn"))
    with pytest.raises(ClippingEdgeError, match="pixels"):
        Trainer(tiny_locked_run(small_data, tmp_path / "a", method="a-clip-ping", anchors="imagenet", lock_text=True))


def json_lines(path: Path) -> list[dict]:
    import json

    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def pretrained_checkpoint(small_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The head variant: its top-k mask is the part of the graph converters are likeliest to trip on."""
    from clipping_edge.training.trainer import train

    out = tmp_path_factory.mktemp("pretrained")
    return train(tiny_locked_run(small_data, out / "run", student=tiny_head_student(out), method="clip-ping",
                                 lock_text=True, unlocked_text_blocks=1, teacher_image_size=32))


EXPORT_AND_CLASSIFY = """
import json, sys
import numpy as np
from clipping_edge.export.bundle import export_bundle
from clipping_edge import ZeroShotClassifier, load
checkpoint, out, target, data, image = sys.argv[1:]
bundle, parity = export_bundle(checkpoint, out, target, "none", data)
if target == "coreml":  # Core ML predicts on macOS only: validated here by the stand-in running the stored weights
    print(json.dumps({"parity": parity, "trained_token_ids": None, "score": 0.0}))
    sys.exit(0)
model = load(bundle)
score = ZeroShotClassifier(model, ["red circle", "blue square"]).classify(image)[0][0].score
print(json.dumps({"parity": parity, "trained_token_ids": model.manifest.trained_token_ids, "score": float(score)}))
"""


@pytest.mark.parametrize("target", ["onnx", "openvino", "tflite", "coreml"])
def test_pretrained_student_exports_with_parity(pretrained_checkpoint: Path, small_data: Path, tmp_path: Path, target: str):
    """In a fresh interpreter: three converters' and runtimes' native state (LiteRT, OpenVINO, jax) for a
    MiniLM-sized text tower, left in the test process, crashed a later test at garbage collection."""
    import json
    import subprocess
    import sys

    image = next((small_data / "test" / "images").iterdir())
    result = subprocess.run([sys.executable, "-c", EXPORT_AND_CLASSIFY, str(pretrained_checkpoint), str(tmp_path / target),
                             target, str(small_data), str(image)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    record = json.loads(result.stdout.strip().splitlines()[-1])
    parity = record["parity"]
    assert parity["passed"] and parity["image_cosine_min"] >= 0.9999 and parity["text_cosine_min"] >= 0.9999
    if target == "coreml":
        assert "stand-in" in parity["checked_by"] and parity["offline"]["image"]["stored_weights_loaded"] > 0
        return
    assert record["trained_token_ids"] is None  # the text tower came from MiniLM: every piece was trained
    assert np.isfinite(record["score"])


NOISE = ("Failed to load", "_C_mxfp8", "register_constant", "LeafSpec", "copyreg", "Loaded pretrained weights",
         "Loading weights", "Evaluation failed", "\r")


def test_a_short_run_prints_none_of_the_known_noise(small_data: Path, tmp_path: Path):
    """Train a pretrained-init student (EfficientNet-Lite and MiniLM load) and export it to ONNX, as the demo
    does, through the CLI in a fresh process: no line from the dependency noise a newcomer used to see."""
    import subprocess
    import sys

    run = tmp_path / "run"
    commands = [["train", "--data", str(small_data), "--out", str(run), "--student", "test-tiny-pretrained", "--method",
                 "clip", "--epochs", "1", "--batch-size", "64", "--limit", "128", "--workers", "0", "--lock-image"],
                ["export", "--checkpoint", str(run / "checkpoint"), "--out", str(tmp_path / "bundle"), "--data", str(small_data)]]
    for command in commands:
        result = subprocess.run([sys.executable, "-m", "clipping_edge.cli", *command], capture_output=True, text=True,
                                env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})
        assert result.returncode == 0, result.stderr[-2000:]
        output = result.stdout + result.stderr
        assert not [n for n in NOISE if n in output], output[-3000:]


def test_ablation_builds_the_locked_caches_its_runs_read(small_data: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch):
    import argparse

    import clipping_edge.benchmarks.ablation as ablation

    suite = ablation.Suite(str(small_data), "test-tiny-pretrained", 1, {"synthetic": (str(small_data), 200)},
                           [("synthetic", "zero_shot_top1", "top-1")], {"lr": 1e-3, "warmup_steps": 2},
                           {"locked": {"lock_image": True, "lock_text": True, "eval_every": 1, "eval_limit": 100}})
    monkeypatch.setitem(ablation.SUITES, "tiny", suite)
    args = argparse.Namespace(suite="tiny", seeds=[0], methods=["clip"], recipes=["basic"], variants=[], inits=["locked"],
                              data=str(small_data), student=suite.student, epochs=1, batch_size=64, workers=0,
                              teacher_image_size=None, logit_scale=None, out=str(tmp_path / "ablation"))
    caches = {}
    for name, job in (("before", lambda: ablation.build_locked_caches_once(ablation.planned_runs(args), args)),
                      ("run", lambda: ablation.train_and_evaluate(ablation.planned_runs(args)[0], args))):
        monkeypatch.setenv("CLIPPING_EDGE_CACHE", str(tmp_path / name))
        job()
        caches[name] = {p.name for p in (tmp_path / name / "banks").iterdir()}
    # the test split as the suite scores it (200 images), as training's final evaluation does (all 480), and as
    # the val curve does (test stands in: this set has no val split; 100 images); and the training split
    assert len(caches["before"]) == 4 and caches["before"] <= caches["run"], caches


def test_a_shipped_student_is_the_trained_one_rebuilt_from_the_packages(small_data: Path, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch):
    """`shipped:NAME` (training/shipped.py): only what training changed is stored; rebuilt from the packages it is
    the trained student exactly, exports and classifies; towers other than those it was trained on are refused."""
    import clipping_edge.training.shipped as shipped
    from clipping_edge.export.bundle import export_bundle
    from clipping_edge.training.checkpoint import load_student
    from clipping_edge.training.trainer import train

    monkeypatch.setattr(shipped, "SHIPPED_DIR", tmp_path / "shipped")
    run = tmp_path / "run"
    checkpoint = train(tiny_locked_run(small_data, run, lock_text=True, logit_scale=7.0))
    record = shipped.ship(checkpoint, "tiny-real", {"command": "the test's"})
    stored = json.loads(record.read_text())["shipped_tensors"]
    assert stored == ["logit_scale", "text.proj.weight", "visual.proj.weight"], stored  # the locked towers stay out

    rebuilt = shipped.shipped_checkpoint("shipped:tiny-real")
    original, again = load_student(checkpoint)[0].state_dict(), load_student(rebuilt)[0].state_dict()
    assert original.keys() == again.keys() and all(torch.equal(original[k], again[k]) for k in original)
    assert shipped.shipped_checkpoint("shipped:tiny-real") == rebuilt  # built once
    bundle, parity = export_bundle("shipped:tiny-real", tmp_path / "bundle", "onnx", "none", str(small_data))
    assert parity["passed"]

    with pytest.raises(ClippingEdgeError, match="no shipped student 'nope'"):
        shipped.shipped_checkpoint("shipped:nope")
    edited = json.loads(record.read_text())
    edited["towers_sha256"] = "0" * 64  # as if a package update had changed the towers' weights
    record.write_text(json.dumps(edited))
    with pytest.raises(ClippingEdgeError, match="other packaged towers"):
        shipped.shipped_checkpoint("shipped:tiny-real")


def test_the_shipped_real_data_student_rebuilds_on_the_installed_packages():
    """training/shipped/effnet-minilm-real: the installed packages still hold the towers it was trained on (a
    package update that changed them fails here, not in a user's export), and its projections load unchanged."""
    from safetensors.torch import load_file

    from clipping_edge.training.checkpoint import load_student
    from clipping_edge.training.shipped import SHIPPED_DIR, shipped_checkpoint

    student = load_student(shipped_checkpoint("shipped:effnet-minilm-real"))[0]
    state = student.state_dict()
    for name, tensor in load_file(str(SHIPPED_DIR / "effnet-minilm-real.safetensors")).items():
        assert torch.equal(state[name], tensor), name
    assert student.config.vision.kind == "efficientnet-lite" and student.config.text.kind == "minilm"
