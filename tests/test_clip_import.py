"""Bring your own CLIP (issue 31): open_clip and Hugging Face CLIP models through import, export and the runtime.

Random weights throughout (no package ships trained CLIP weights); small custom architectures by default, the
real MobileCLIP2-S0 and ViT-B-32 architectures under `-m slow`. Each imported model is compared with the
library that defines it (open_clip, transformers) on the same weights, so a wrong rename or pooling shows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from clipping_edge.errors import ClippingEdgeError

TINY = {"embed_dim": 64, "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32},
        "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2}}
TRICKY = ["a photo of a cat.", "Café naïve résumé", "cafe\u0301 decomposed", "🐶 dog 🐱‍👤 ninja cat", "猫の写真 一只猫",
          "don't stop, it's 5 o'clock!!!", "  lots   of\twhitespace\n here ", "word " * 100, "‘quoted’ “text”",
          "ﬁsh ﬂower ǅ", "ＦＵＬＬ ｗｉｄｔｈ", "Tom &amp; Jerry", "3.14159 numbers 2024", "snake_case-and-dash/slash",
          "Ελληνικά кириллица العربية", "x" * 300, ""]


def open_clip():
    from clipping_edge.training.compat import import_open_clip

    return import_open_clip()


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("clip") / "tiny-clip.json"
    path.write_text(json.dumps(TINY))
    return path


@pytest.fixture(scope="module")
def tiny_weights(tiny_config: Path) -> Path:
    """A random tiny open_clip model's weights, saved as a user's download would be."""
    open_clip()
    from open_clip.model import CustomTextCLIP
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = CustomTextCLIP(**TINY)
    path = tiny_config.with_name("tiny-clip.safetensors")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


@pytest.fixture(scope="module")
def tiny_import(tiny_config: Path, tiny_weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from clipping_edge.training.clip_import import import_clip

    return import_clip(f"open_clip:{tiny_config}={tiny_weights}", tmp_path_factory.mktemp("imported") / "tiny")


def test_clip_tokenizer_ids_equal_open_clips(tmp_path: Path):
    from clipping_edge.training.clip_tokenizer import clip_tokenizer

    ours = clip_tokenizer(77, tmp_path / "tokenizer.json")
    reference = open_clip().get_tokenizer("ViT-B-32")(TRICKY).numpy()
    assert np.array_equal(ours(TRICKY, warn=False), reference)
    assert ours.pad_id == 0 and ours.eot_id == 49407


@pytest.mark.parametrize("size", [(37, 91), (300, 97), (64, 64), (225, 224), (1000, 3)])
@pytest.mark.parametrize("resize,interpolation", [("shortest", "bicubic"), ("shortest", "bilinear"), ("squash", "bicubic")])
# Not "P": open_clip resizes a palette image before converting it to RGB, so Pillow resamples its palette indices
# with nearest neighbour; ours converts first and filters the colours.
@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L"])
def test_preprocessing_equals_open_clips_transform(size, resize, interpolation, mode):
    from clipping_edge.preprocess import Preprocess, preprocess_image

    rng = np.random.default_rng(sum(size))
    image = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).convert(mode)
    if mode == "RGBA":  # opaque: open_clip's convert("RGB") drops alpha, ours puts it over white; equal when opaque
        image.putalpha(255)
    mean, std = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
    transform = open_clip().image_transform(64, is_train=False, mean=mean, std=std, resize_mode=resize,
                                            interpolation=interpolation)
    theirs = transform(image).numpy() * np.asarray(std)[:, None, None] + np.asarray(mean)[:, None, None]
    ours = preprocess_image(image, Preprocess(64, resize, interpolation))
    assert ours.shape == theirs.shape
    assert np.abs(ours - theirs).max() * 255 <= 1.0 + 1e-3


def test_imported_open_clip_model_equals_open_clips_own(tiny_import: Path, tiny_config: Path, tiny_weights: Path):
    from clipping_edge.training.checkpoint import load_student

    open_clip()
    from open_clip.model import CustomTextCLIP

    student, tokenizer, meta = load_student(tiny_import)
    assert meta["imported"]["weights"] == "loaded" and student.config.vision.kind == "open_clip"
    reference = CustomTextCLIP(**TINY).eval()
    open_clip().load_checkpoint(reference, str(tiny_weights))
    pixels = torch.rand(3, 3, 64, 64)
    texts = ["a photo of a cat", "dog", "a much longer caption about a red bicycle"]
    ids = torch.from_numpy(tokenizer(texts)).long()
    mean = torch.tensor(student.config.vision.mean).view(1, 3, 1, 1)
    std = torch.tensor(student.config.vision.std).view(1, 3, 1, 1)
    with torch.no_grad():
        image_cos = torch.cosine_similarity(reference.encode_image((pixels - mean) / std, normalize=True), student.visual(pixels))
        text_cos = torch.cosine_similarity(reference.encode_text(ids, normalize=True), student.text(ids))
    assert image_cos.min() > 0.99999 and text_cos.min() > 0.99999
    assert abs(student.logit_scale.exp().item() - reference.logit_scale.exp().item()) < 1e-4


def test_hugging_face_clip_folder_imports_as_transformers_computes_it(tmp_path: Path):
    open_clip()  # first: it declares what torchvision needs before transformers imports it
    from transformers import CLIPConfig, CLIPModel

    from clipping_edge.training.clip_import import import_clip
    from clipping_edge.training.checkpoint import load_student

    torch.manual_seed(0)
    config = CLIPConfig(text_config={"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                                     "num_attention_heads": 2, "max_position_embeddings": 32},
                        vision_config={"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                                       "num_attention_heads": 2, "image_size": 64, "patch_size": 16},
                        projection_dim=48)
    hf = CLIPModel(config).eval()
    hf.save_pretrained(tmp_path / "hf-clip")
    student, tokenizer, _ = load_student(import_clip(f"hf:{tmp_path / 'hf-clip'}", tmp_path / "imported"))
    pixels = torch.rand(2, 3, 64, 64)
    ids = torch.from_numpy(tokenizer(["a red circle", "two dogs playing in the snow"])).long()
    mean = torch.tensor(student.config.vision.mean).view(1, 3, 1, 1)
    std = torch.tensor(student.config.vision.std).view(1, 3, 1, 1)
    with torch.no_grad():
        image = hf.get_image_features(pixel_values=(pixels - mean) / std)
        text = hf.get_text_features(input_ids=ids)
        image, text = (getattr(x, "pooler_output", x) for x in (image, text))
        assert torch.cosine_similarity(image, student.visual(pixels)).min() > 0.99999
        assert torch.cosine_similarity(text, student.text(ids)).min() > 0.99999


def test_bad_specs_are_one_error_line(capsys, monkeypatch, tmp_path: Path, tiny_config: Path):
    from clipping_edge.cli import main

    (tmp_path / "weights.bin").write_bytes(b"\x80\x04pickle")
    cases = {f"open_clip:{tiny_config}={tmp_path / 'weights.bin'}": "safetensors only",
             f"open_clip:{tiny_config}={tmp_path / 'nope.safetensors'}": "does not exist",
             "open_clip:ViT-B-33=random": "did you mean",
             "open_clip:ViT-B-32": "names no weights",
             "open_clip:ViT-B-16-SigLIP=random": "uses a tokenizer of its own",
             f"hf:{tmp_path}": "config",
             "clip:ViT-B-32": "not a model spec"}
    (tmp_path / "tokenizer.json").write_text("{}")  # a stray file in the working directory is never taken
    monkeypatch.chdir(tmp_path)
    for spec, expected in cases.items():
        assert main(["import", spec, "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err and expected in err, (spec, err)
    assert not (tmp_path / "out").exists()


def test_export_takes_a_spec_and_the_bundle_classifies_and_verifies(tiny_config: Path, tiny_weights: Path,
                                                                      small_data: Path, tmp_path: Path):
    import clipping_edge
    from clipping_edge.golden import verify
    from clipping_edge.export.bundle import export_bundle

    bundle, parity = export_bundle(f"open_clip:{tiny_config}={tiny_weights}", tmp_path / "bundle", "onnx", "none",
                                   str(small_data))
    assert parity["passed"] and parity["image_cosine_min"] > 0.9999
    model = clipping_edge.load(bundle)
    assert model.manifest.context_length == 32 and model.manifest.preprocess["mode"] == "shortest"
    assert verify(model)["passed"]
    image = next((small_data / "test" / "images").iterdir())
    predictions = clipping_edge.ZeroShotClassifier(model, ["red circle", "blue square"]).classify(image)
    assert {p.label for p in predictions[0]} == {"red circle", "blue square"}


@pytest.mark.parametrize("model,target", [("clip", "onnx"), ("clip", "openvino"), ("siglip", "onnx")])
def test_an_imported_model_gets_an_app_ready_classifier(model: str, target: str, request: pytest.FixtureRequest,
                                                        small_data: Path, tmp_path: Path):
    """`export --labels` on an imported model: open_clip's towers (SigLIP: timm's attention-pooled ViT) inside the
    one-graph classifier, its probabilities checked against the two towers by the export, and the mobile rewrite
    for ONNX."""
    from clipping_edge.export.bundle import export_bundle

    if model == "clip":
        spec = request.getfixturevalue("tiny_import")
    else:
        spec = f"open_clip:{request.getfixturevalue('tiny_siglip')}=random"
    labels = ["red circle", "blue square", "green triangle"]
    bundle, parity = export_bundle(spec, tmp_path / target, target, "none", str(small_data), labels=labels)
    record = json.loads((bundle / "manifest.json").read_text())["classifier"]
    assert parity["passed"] and record["parity"]["passed"] and record["labels"] == labels, record["parity"]
    if target == "onnx":
        assert record["mobile_usability"]["CoreML MLProgram"]["verdict"] == "YES", record["mobile_usability"]


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["MobileCLIP2-S0", "ViT-B-32"])
def test_real_architectures_export_to_every_runtime(arch: str, small_data: Path, tmp_path: Path):
    """The architectures users hold, with random weights: each runtime's towers against PyTorch, in fp32 and int8."""
    from clipping_edge.export.bundle import export_bundle

    for target, quantize in (("onnx", "none"), ("onnx", "int8"), ("openvino", "none"), ("openvino", "int8"),
                             ("tflite", "none"), ("tflite", "int8")):
        _, parity = export_bundle(f"open_clip:{arch}=random", tmp_path / f"{target}-{quantize}", target, quantize,
                                  str(small_data), allow_degraded=True)
        assert parity["image_cosine_min"] > (0.9999 if quantize == "none" else 0.99), (target, quantize, parity)


def test_inherited_student_keeps_the_chosen_blocks_exactly(tiny_import: Path):
    from clipping_edge.training.checkpoint import load_student
    from clipping_edge.training.clip_import import inherit_blocks, parse_keep

    assert parse_keep("3", 12, "text") == [0, 6, 11] and parse_keep("1", 12, "text") == [11]
    assert parse_keep("0,5,11", 12, "text") == [0, 5, 11]
    for bad in ("0", "13", "5,2", "a", "0,12"):
        with pytest.raises(ClippingEdgeError, match="keep-text-blocks"):
            parse_keep(bad, 12, "text")
    full, _, _ = load_student(tiny_import)
    small, kept = inherit_blocks(full, keep_image="1", keep_text="0,")
    assert kept == {"image": [1], "text": [0]}
    assert len(small.visual.net.transformer.resblocks) == 1 and len(small.text.net.transformer.resblocks) == 1
    big, little = full.state_dict(), small.state_dict()
    for name, tensor in little.items():  # the image tower's block 0 is the big one's block 1; the text's block 0 its 0
        source = name.replace("visual.net.transformer.resblocks.0.", "visual.net.transformer.resblocks.1.")
        assert torch.equal(tensor, big[source]), name
    assert torch.equal(little["text.net.token_embedding.weight"], big["text.net.token_embedding.weight"])


def test_distil_a_smaller_student_from_a_clip_teacher_end_to_end(capsys, tiny_config: Path, tiny_weights: Path,
                                                                  small_data: Path, tmp_path: Path):
    """--student-from with fewer blocks, CLIP-PING with the full model's towers as teachers, then export."""
    import clipping_edge
    from clipping_edge.cli import main

    spec = f"open_clip:{tiny_config}={tiny_weights}"
    assert main(["train", "--data", str(small_data), "--limit", "256", "--student-from", spec, "--keep-text-blocks", "1",
                 "--teacher", spec, "--method", "clip-ping", "--epochs", "1", "--batch-size", "64", "--workers", "0",
                 "--eval-limit", "64", "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "keeps blocks [1]" in out and "clip-ping" in out
    banks = json.loads((tmp_path / "run" / "banks.json").read_text())
    assert banks["image_teacher"].startswith("clip-image|") and banks["text_teacher"].startswith("clip-text|")
    assert main(["export", "--checkpoint", str(tmp_path / "run" / "checkpoint"), "--out", str(tmp_path / "bundle"),
                 "--data", str(small_data)]) == 0
    model = clipping_edge.load(tmp_path / "bundle")
    assert model.manifest.context_length == TINY["text_cfg"]["context_length"] and model.tokenizer.eot_id == 49407


def test_sentencepiece_tokenizer_ids_equal_open_clips(tiny_siglip: Path, tmp_path: Path):
    """SigLIP's tokenizer path: open_clip's cleaning (canonicalize) + transformers' SiglipTokenizer reading the
    SentencePiece model (the sentencepiece library itself) is the reference; ours is spiece.model rewritten as a
    tokenizer.json, and the same model handed over as a tokenizer.json."""
    open_clip()
    from open_clip.tokenizer import HFTokenizer
    from tokenizers.processors import TemplateProcessing

    from clipping_edge.tokenizer import TextTokenizer
    from clipping_edge.training.model_tokenizer import model_tokenizer, sentencepiece_tokenizer

    context = 16  # shorter than the model's, so that truncation is exercised
    reference = HFTokenizer(str(tiny_siglip.parent), context_length=context, clean="canonicalize")
    model_tokenizer(tiny_siglip.parent / "spiece.model", context, "canonicalize").save(str(tmp_path / "ours.json"))
    ours = TextTokenizer(tmp_path / "ours.json", context)
    (tmp_path / "as-json").mkdir()
    plain, end = sentencepiece_tokenizer(tiny_siglip.parent / "spiece.model")
    plain.post_processor = TemplateProcessing(single=f"$A {end}", special_tokens=[(end, plain.token_to_id(end))])
    plain.enable_padding(pad_id=plain.token_to_id(end), pad_token=end)  # as a fast tokenizer's file says it
    plain.save(str(tmp_path / "as-json" / "tokenizer.json"))
    model_tokenizer(tmp_path / "as-json" / "tokenizer.json", context, "canonicalize").save(str(tmp_path / "from-json.json"))
    from_json = TextTokenizer(tmp_path / "from-json.json", context)
    texts = [*TRICKY, "</s> inside", "a photo of a cat"]
    expected = reference(texts).numpy()
    assert end == "</s>" and ours.eot_id == ours.pad_id == 1
    for text, want, got, got_json in zip(texts, expected, ours(texts, warn=False), from_json(texts, warn=False)):
        assert got.tolist() == want.tolist() == got_json.tolist(), text
    for junk in (b"", b"\x80\x04pickle", (tiny_siglip.parent / "spiece.model").read_bytes()[:100]):
        (tmp_path / "bad.model").write_bytes(junk)
        with pytest.raises(ClippingEdgeError, match="SentencePiece"):
            model_tokenizer(tmp_path / "bad.model", context, "canonicalize")


def test_siglip_model_imports_as_open_clip_computes_it(tiny_siglip: Path, tmp_path: Path):
    """A sigmoid model (attention-pooled timm ViT, last-position text pooling, logit bias) with its own
    SentencePiece tokenizer found beside the weights."""
    from safetensors.torch import save_file

    from clipping_edge.training.checkpoint import load_student
    from clipping_edge.training.clip_import import import_clip
    from conftest import TINY_SIGLIP

    open_clip()
    from open_clip.model import CustomTextCLIP
    from open_clip.tokenizer import HFTokenizer

    torch.manual_seed(0)
    reference = CustomTextCLIP(**{k: v for k, v in TINY_SIGLIP.items() if k != "custom_text"}).eval()
    with torch.no_grad():
        reference.logit_bias.fill_(-12.5)
    weights = tiny_siglip.with_name("tiny-siglip.safetensors")
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(weights))
    student, tokenizer, meta = load_student(import_clip(f"open_clip:{tiny_siglip}={weights}", tmp_path / "imported"))
    assert meta["imported"]["logit_bias"] == -12.5 and student.config.text.vocab_size == 96
    texts = ["a photo of a cat", "A Red Circle!", "two big yellow squares on a table"]
    ids = torch.from_numpy(tokenizer(texts)).long()
    assert ids.tolist() == HFTokenizer(str(tiny_siglip.parent), context_length=32, clean="canonicalize")(texts).tolist()
    pixels = torch.rand(2, 3, 160, 160)
    mean = torch.tensor(student.config.vision.mean).view(1, 3, 1, 1)
    std = torch.tensor(student.config.vision.std).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.cosine_similarity(reference.encode_image((pixels - mean) / std, normalize=True),
                                       student.visual(pixels)).min() > 0.99999
        assert torch.cosine_similarity(reference.encode_text(ids, normalize=True), student.text(ids)).min() > 0.99999


@pytest.mark.parametrize("target", ["onnx", "openvino", "tflite"])
def test_siglip_model_exports_to_every_runtime_and_classifies(target: str, tiny_siglip: Path, small_data: Path,
                                                                tmp_path: Path):
    import clipping_edge
    from clipping_edge.export.bundle import export_bundle
    from clipping_edge.golden import verify

    bundle, parity = export_bundle(f"open_clip:{tiny_siglip}=random", tmp_path / target, target, "none", str(small_data))
    assert parity["passed"] and parity["image_cosine_min"] > 0.9999 and parity["text_cosine_min"] > 0.9999, parity
    model = clipping_edge.load(bundle)
    scale = 1 / 0.07  # open_clip's initial logit scale
    assert model.manifest.context_length == 32 and model.manifest.sigmoid == {"logit_scale": pytest.approx(scale),
                                                                               "logit_bias": -10.0}
    assert verify(model)["passed"]
    image = next((small_data / "test" / "images").iterdir())
    classifier = clipping_edge.ZeroShotClassifier(model, ["red circle", "blue square"])
    predictions = classifier.classify(image)
    assert {p.label for p in predictions[0]} == {"red circle", "blue square"}
    embedding = model.encode_image([image])
    cosines = classifier.index.cosines(embedding)
    assert np.allclose(classifier.match_probabilities(embedding), 1 / (1 + np.exp(-(scale * cosines - 10.0))), atol=1e-5)


@pytest.fixture(scope="module")
def hf_siglip(tiny_siglip: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random small transformers SiglipModel folder as save_pretrained writes it, with its SentencePiece
    tokenizer and image processor."""
    open_clip()  # first: it declares what torchvision needs before transformers' image processor imports it
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel, SiglipTokenizer

    torch.manual_seed(0)
    tower = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2}
    config = SiglipConfig(text_config={**tower, "max_position_embeddings": 24, "vocab_size": 96},
                          vision_config={**tower, "image_size": 48, "patch_size": 16})
    folder = tmp_path_factory.mktemp("hf") / "hf-siglip"
    SiglipModel(config).save_pretrained(folder)
    SiglipTokenizer(vocab_file=str(tiny_siglip.parent / "spiece.model"), model_max_length=24).save_pretrained(folder)
    SiglipImageProcessor(size={"height": 48, "width": 48}).save_pretrained(folder)
    return folder


def test_hugging_face_siglip_folder_imports_as_transformers_computes_it(hf_siglip: Path, tmp_path: Path):
    """The towers, the token ids and the pixels all equal transformers' own."""
    from transformers import SiglipImageProcessor, SiglipModel, SiglipTokenizer

    from clipping_edge.preprocess import preprocess_image
    from clipping_edge.training.checkpoint import load_student
    from clipping_edge.training.clip_import import import_clip

    hf = SiglipModel.from_pretrained(hf_siglip).eval()
    tokenizer, processor = SiglipTokenizer.from_pretrained(hf_siglip), SiglipImageProcessor.from_pretrained(hf_siglip)
    student, ours, meta = load_student(import_clip(f"hf:{hf_siglip}", tmp_path / "imported"))
    assert meta["imported"]["logit_bias"] == pytest.approx(float(hf.logit_bias))
    assert student.config.vision.resize == "squash" and student.config.vision.mean == (0.5, 0.5, 0.5)

    texts = ["a photo of a cat", "Snake_case, Punctuation!", "café NAÏVE", "word " * 40, ""]
    ids = ours(texts, warn=False)
    assert ids.tolist() == tokenizer(texts, padding="max_length", max_length=24, truncation=True)["input_ids"]
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (37, 91, 3), dtype=np.uint8))
    theirs = processor(image, return_tensors="pt")["pixel_values"]
    pixels = torch.from_numpy(preprocess_image(image, student.config.vision.preprocess()))[None]
    assert (pixels * 2 - 1 - theirs).abs().max() <= 2 / 255 + 1e-6  # one level, after (x - 0.5) / 0.5
    with torch.no_grad():
        image_features = hf.get_image_features(pixel_values=theirs)
        text_features = hf.get_text_features(input_ids=torch.from_numpy(ids).long())
        image_features, text_features = (getattr(x, "pooler_output", x) for x in (image_features, text_features))
        assert torch.cosine_similarity(image_features, student.visual((theirs + 1) / 2)).min() > 0.99999
        assert torch.cosine_similarity(text_features, student.text(torch.from_numpy(ids).long())).min() > 0.99999


def test_hugging_face_siglip_exports_to_tflite(hf_siglip: Path, small_data: Path, tmp_path: Path):
    """timm's attention-pooled ViT built from the folder's sizes, through the strictest converter."""
    from clipping_edge.export.bundle import export_bundle

    _, parity = export_bundle(f"hf:{hf_siglip}", tmp_path / "tflite", "tflite", "none", str(small_data))
    assert parity["passed"] and parity["image_cosine_min"] > 0.9999 and parity["text_cosine_min"] > 0.9999, parity


def test_a_hugging_face_folder_whose_weights_do_not_fit_is_one_error(capsys, hf_siglip: Path, tmp_path: Path):
    """Weights of another model, or a config that disagrees with its weights: one error line, nothing written."""
    import shutil

    from safetensors.torch import save_file

    from clipping_edge.cli import main

    other, edited = shutil.copytree(hf_siglip, tmp_path / "other"), shutil.copytree(hf_siglip, tmp_path / "edited")
    save_file({"x": torch.zeros(2)}, str(other / "model.safetensors"))
    config = json.loads((edited / "config.json").read_text())
    config["vision_config"]["intermediate_size"] = 96
    (edited / "config.json").write_text(json.dumps(config))
    for folder, expected in ((other, "not a transformers SiglipModel's weights"), (edited, "do not fit the architecture")):
        assert main(["import", f"hf:{folder}", "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err and expected in err, err
    assert not (tmp_path / "out").exists()
