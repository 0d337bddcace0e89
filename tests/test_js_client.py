"""The JavaScript client (clients/js) against the Python runtime, with real bundles.

Python writes the cases and exports the bundles; Node's test runner checks them (`node --test` in
clients/js): preprocessing and tokenizing give Python's pixels and ids, every bundle's golden vectors are
reproduced by onnxruntime-node (fp32 and int8, a caption BPE and the WordPiece vocabulary), and the page
does the same in headless Chromium with onnxruntime-web. `make test` installs the npm packages (npm ci)
and Chromium (apt) first; without Node or Chromium these tests skip and say why.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clipping_edge.preprocess import preprocess_image

ROOT = Path(__file__).resolve().parents[1]
CLIENT = ROOT / "clients" / "js"
NODE = shutil.which("node")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("CLIPPING_EDGE_ARTIFACTS", ROOT / "runs" / "test-artifacts"))

pytestmark = pytest.mark.skipif(NODE is None, reason="Node.js is not installed: the JavaScript client cannot be tested")


def node_test(files: list[str], env: dict[str, str], timeout: int = 600) -> str:
    if not (CLIENT / "node_modules").is_dir():
        pytest.fail("clients/js/node_modules is missing: run `npm ci` in clients/js (make test does)")
    run = subprocess.run([NODE, "--test", *files], cwd=CLIENT, env={**os.environ, **env}, capture_output=True,
                         text=True, timeout=timeout)
    assert run.returncode == 0, f"node --test failed:\n{run.stdout[-6000:]}\n{run.stderr[-3000:]}"
    return run.stdout


def _png(array: np.ndarray, mode: str | None = None) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array, mode).save(out, "PNG")
    return out.getvalue()


def _image_cases(rng: np.random.Generator) -> list[tuple[str, bytes, int, float]]:
    """(what, file bytes, size, allowed max |pixel difference|): every pixel mode and aspect Pillow reads."""
    def noise(h: int, w: int, c: int) -> np.ndarray:
        return rng.integers(0, 256, (h, w, c), dtype=np.uint8) if c > 1 else rng.integers(0, 256, (h, w), dtype=np.uint8)

    gradient = np.broadcast_to(np.linspace(0, 255, 300, dtype=np.uint8)[None, :, None], (200, 300, 3)).copy()
    palette = Image.fromarray(noise(40, 50, 3)).quantize(16)
    palette_bytes = io.BytesIO()
    palette.save(palette_bytes, "PNG")
    def jpeg(array: np.ndarray, orientation: int | None = None) -> bytes:
        out, image = io.BytesIO(), Image.fromarray(array)
        exif = image.getexif()
        if orientation:
            exif[0x0112] = orientation
        image.save(out, "JPEG", quality=90, exif=exif)
        return out.getvalue()

    exact = 1e-6
    return [
        ("RGB, wider, downscaled", _png(noise(48, 64, 3)), 32, exact),
        ("RGB gradient, 300x200 to 224", _png(gradient), 224, exact),
        ("RGBA over white", _png(noise(101, 100, 4)), 64, exact),
        ("RGBA, tall, upscaled (vertical pass first in Pillow 13)", _png(noise(500, 37, 4)), 224, exact),
        ("greyscale L", _png(noise(33, 45, 1)), 32, exact),
        ("greyscale with alpha LA", _png(noise(30, 20, 2), "LA"), 32, exact),
        ("palette P", palette_bytes.getvalue(), 32, exact),
        ("exact size, a crop", _png(noise(32, 40, 3)), 32, exact),
        ("1 x 1000 column", _png(noise(1000, 1, 3)), 32, exact),
        ("wide strip 640x48", _png(noise(48, 640, 3)), 224, exact),
        # sharp decodes JPEG with libjpeg-turbo as Pillow does (chroma upsampling included): exact.
        ("JPEG gradient", jpeg(gradient), 224, exact),
        ("JPEG noise (4:2:0 chroma)", jpeg(noise(120, 160, 3)), 64, exact),
        ("JPEG with EXIF orientation 6 (rotate)", jpeg(noise(40, 60, 3), orientation=6), 32, exact),
    ]


def test_preprocessing_and_tokenizing_match_python(tmp_path: Path, tiny_siglip: Path):
    from clipping_edge.tokenizer import TextTokenizer
    from clipping_edge.training.tokenizer_build import train_tokenizer
    from clipping_edge.training.clip_tokenizer import clip_tokenizer
    from clipping_edge.training.model_tokenizer import model_tokenizer
    from clipping_edge.training.tokenizer_packaged import packaged_tokenizer

    rng = np.random.default_rng(0)
    images = []
    for i, (about, data, size, max_abs) in enumerate(_image_cases(rng)):
        suffix = ".jpg" if data[:2] == b"\xff\xd8" else ".png"
        (tmp_path / f"{i}{suffix}").write_bytes(data)
        (tmp_path / f"{i}.f32").write_bytes(preprocess_image(data, size).astype("<f4").tobytes())
        images.append({"file": f"{i}{suffix}", "expected": f"{i}.f32", "size": size, "max_abs": max_abs, "about": about})
    texts = ["a photo of a cat.", "A PHOTO OF A DOG!", "café au lait, naïve résumé", "  spaces\tand\ttabs\n",
             "emoji 🐱🚀 and CJK 猫と犬", "a <eot> trick <sot> <pad>", "", "x" * 300, "don't can't won't",
             "Ünïcödé ÀÉÎÕÜ ß ﬁ", "numbers 1234567890 3.14", "a photo of a " + "very " * 40 + "long label",
             "ｆｕｌｌｗｉｄｔｈ", "nbsp\u00a0here", "Ελληνικά русский العربية"]
    captions = ["a red circle on a blue background", "a small green triangle", "two big yellow squares"] * 20
    tokenizers = [(train_tokenizer(captions, 300, 16, tmp_path / "bpe.json"), "bpe.json"),
                  (packaged_tokenizer("minilm", 32, tmp_path / "wordpiece.json"), "wordpiece.json"),
                  (clip_tokenizer(77, tmp_path / "clip.json"), "clip.json")]
    # SigLIP's SentencePiece Unigram with open_clip's cleaning, no start token, padded with its end token
    model_tokenizer(tiny_siglip.parent / "spiece.model", 32, "canonicalize").save(str(tmp_path / "siglip.json"))
    tokenizers.append((TextTokenizer(tmp_path / "siglip.json", 32), "siglip.json"))
    cases = {"images": images, "tokenizers": [
        {"file": file, "context_length": tok.context_length, "texts": texts, "ids": tok(texts, warn=False).tolist()}
        for tok, file in tokenizers]}
    (tmp_path / "cases.json").write_text(json.dumps(cases, ensure_ascii=False), encoding="utf-8")
    node_test(["test/parity.test.js"], {"CLIPPING_EDGE_PARITY_CASES": str(tmp_path)})


@pytest.fixture(scope="module")
def js_bundles(tiny_checkpoint: Path, tiny_bundle: Path, small_data: Path, tiny_siglip: Path,
               tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The tiny student as fp32 (caption BPE), dynamic and static int8, a WordPiece-vocabulary student, an
    imported open_clip CLIP and an imported SigLIP-shaped model."""
    from clipping_edge.export.bundle import export_bundle
    from clipping_edge.training.config import TrainConfig
    from clipping_edge.training.trainer import train

    out = tmp_path_factory.mktemp("js-bundles")
    bundles = [tiny_bundle]
    for precision in ("int8", "int8-static"):  # the tiny student may miss the int8 gates: what is checked here is the port
        bundles.append(export_bundle(tiny_checkpoint, out / precision, "onnx", precision, str(small_data), allow_degraded=True)[0])
    wordpiece = train(TrainConfig(data=str(small_data), out=str(out / "wordpiece-run"), student="test-tiny", method="clip",
                                  epochs=2, batch_size=64, lr=3e-3, warmup_steps=5, workers=0, tokenizer="minilm"))
    bundles.append(export_bundle(wordpiece, out / "wordpiece", "onnx", "none", str(small_data))[0])
    # An imported open_clip model (random weights): CLIP's BPE tokenizer.json, pad id 0, 77-token context.
    config = out / "tiny-clip.json"
    config.write_text(json.dumps({"embed_dim": 32, "vision_cfg": {"image_size": 48, "layers": 1, "width": 32, "patch_size": 16,
                                                                  "head_width": 16},
                                  "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}))
    bundles.append(export_bundle(f"open_clip:{config}=random", out / "open-clip", "onnx", "none", str(small_data))[0])
    # SigLIP: SentencePiece tokenizer.json, end token as padding, attention-pooled image tower
    bundles.append(export_bundle(f"open_clip:{tiny_siglip}=random", out / "siglip", "onnx", "none", str(small_data))[0])
    return bundles


def test_node_reproduces_golden_vectors(js_bundles: list[Path]):
    output = node_test(["test/golden.test.js"], {"CLIPPING_EDGE_BUNDLES": os.pathsep.join(map(str, js_bundles))})
    print(output)
    assert output.count("\nok ") >= len(js_bundles) + 2 and "# fail 0" in output


def test_browser_page_classifies_like_python(tiny_checkpoint: Path, tiny_bundle: Path, js_bundles: list[Path],
                                            small_data: Path, tmp_path: Path):
    from clipping_edge.export.bundle import export_bundle

    if not Path(CHROMIUM).exists():
        pytest.skip(f"Chromium is not installed at {CHROMIUM}: `apt-get install chromium` (make test tries) to run the browser test")
    golden = json.loads((tiny_bundle / "golden" / "golden.json").read_text())
    # The app-ready classifier of the golden labels must rank the golden images as the two towers did.
    with_classifier, _ = export_bundle(tiny_checkpoint, tmp_path / "classifier", "onnx", "none", str(small_data),
                                       labels=golden["labels"])
    # fp32, static int8 and an imported SigLIP through onnxruntime-web's WebAssembly kernels.
    pages = os.pathsep.join(str(b) for b in js_bundles if b == tiny_bundle or b.name in ("int8-static", "siglip"))
    output = node_test(["test/browser.test.js"], {"CLIPPING_EDGE_BROWSER_BUNDLE": pages, "CHROMIUM": CHROMIUM,
                                                  "CLIPPING_EDGE_BROWSER_CLASSIFIER_BUNDLE": str(with_classifier),
                                                  "CLIPPING_EDGE_ARTIFACTS": str(ARTIFACTS)})
    print(output)
    assert "# pass 4" in output and "# fail 0" in output, output
    expected = [row[0]["label"] for row in golden["expected_top_k"]]
    for name in ("browser", "browser-classifier"):
        assert json.loads((ARTIFACTS / f"{name}.json").read_text())["top1"] == expected
        assert (ARTIFACTS / f"{name}.png").stat().st_size > 10_000


def test_node_cli_refuses_bad_input_in_one_line(tiny_bundle: Path, tmp_path: Path, small_data: Path):
    """The JavaScript client holds the Python CLI's contract: one `error:` line naming the fix, exit 2."""
    image = str(next((small_data / "test" / "images").iterdir()))
    broken = tmp_path / "broken"
    shutil.copytree(tiny_bundle, broken)
    (broken / "manifest.json").write_text('{"format_version": 2, "logit_scale": NaN')
    no_golden = tmp_path / "no-golden"
    shutil.copytree(tiny_bundle, no_golden)
    manifest = json.loads((no_golden / "manifest.json").read_text())
    (no_golden / manifest["golden"]).write_text("[1, 2")
    cases = [["classify", str(tiny_bundle), "--labels", "a,a", image], ["classify", str(tiny_bundle), "--labels", "a,b", "--top-k", "abc", image],
             ["classify", str(tiny_bundle), "--labels", "a,b", "--top-k", "0", image], ["classify", str(tiny_bundle), "--labels"],
             ["classify", str(broken), "--labels", "a,b", image], ["verify", str(no_golden)]]
    for argv in cases:
        run = subprocess.run([NODE, "src/cli.js", *argv], cwd=CLIENT, capture_output=True, text=True, timeout=120)
        assert run.returncode == 2 and run.stderr.count("error:") == 1 and "    at " not in run.stderr, (argv, run.stderr)
    run = subprocess.run([NODE, "src/cli.js", "--help"], cwd=CLIENT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and run.stdout.startswith("usage:") and not run.stderr
