"""Shared fixtures: a small synthetic dataset, a briefly trained tiny student and its ONNX bundle.

Everything is real (real teachers, real exporter, real ONNX Runtime) but small, so the suite stays fast.
"""

from __future__ import annotations

import os
from pathlib import Path

# Converters' progress bars and pytest's log capture together hung an NNCF export for over an hour here.
os.environ.setdefault("TQDM_DISABLE", "1")

import pytest


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = tmp_path_factory.mktemp("cache")
    os.environ["CLIPPING_EDGE_CACHE"] = str(cache)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return cache


@pytest.fixture(scope="session")
def small_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from clipping_edge.training.data.synthetic import generate

    return generate(tmp_path_factory.mktemp("data") / "synthetic", n_train=2048, n_test=480, seed=1, image_size=32,
                    progress=False)


@pytest.fixture(scope="session")
def tiny_checkpoint(small_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from clipping_edge.training.config import TrainConfig
    from clipping_edge.training.trainer import train

    # Trained enough (about 12x chance zero-shot) that quantization flips real decisions, not ties. A
    # closed-world set, so the caption-trained tokenizer; the open vocabulary has its own tests.
    out = tmp_path_factory.mktemp("run")
    return train(TrainConfig(data=str(small_data), out=str(out), student="test-tiny", method="clip", epochs=20,
                             batch_size=64, lr=3e-3, warmup_steps=20, workers=0, tokenizer="captions"))


@pytest.fixture(scope="session")
def tiny_bundle(tiny_checkpoint: Path, small_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from clipping_edge.export.bundle import export_bundle

    bundle, _ = export_bundle(tiny_checkpoint, tmp_path_factory.mktemp("export") / "bundle", "onnx", "none", str(small_data))
    return bundle


@pytest.fixture(scope="session")
def batchnorm_free_student(tmp_path_factory: pytest.TempPathFactory) -> str:
    """test-tiny with a patch stem instead of the conv stem's batch norm, whose statistics belong to each
    micro-batch or process: without it, accumulated and distributed steps equal the full batch's exactly."""
    import json

    from clipping_edge.training.config import student_config

    cfg = student_config("test-tiny").to_json()
    cfg["vision"]["stem"] = "patch"
    path = tmp_path_factory.mktemp("students") / "test-tiny-patch.json"
    path.write_text(json.dumps(cfg))
    return str(path)


@pytest.fixture
def outlier_tower_job(tmp_path: Path):
    """A TowerJob factory for a two-layer tower whose second layer reads one channel 300x larger than the rest, as
    MiniLM's hidden states do. With `outlier_weight` 1/300 the outlier adds no more to the output than any other
    channel, yet one activation scale per tensor rounds those others to a few levels: every int8 recipe without a
    per-channel remedy loses the output (ONNX Runtime, dynamic or static, on any CPU). With weight 1 SmoothQuant
    (OpenVINO) moves the outlier into the weights, whose rounding then costs the output instead. Either way the
    second layer alone in int8 falls below the keep-float mark and the first alone does not."""
    import numpy as np
    import torch

    from clipping_edge.export.targets import TowerJob

    class OutlierInput(torch.nn.Module):
        def __init__(self, outlier_weight: float):
            super().__init__()
            torch.manual_seed(0)
            self.first, self.second = torch.nn.Linear(32, 64), torch.nn.Linear(64, 48)
            self.register_buffer("gain", torch.ones(64).index_fill(0, torch.tensor([3]), 300.0))
            with torch.no_grad():
                self.second.weight[:, 3] *= outlier_weight

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.second(torch.relu(self.first(x)) * self.gain)

    rows = np.random.default_rng(0).normal(size=(64, 32)).astype(np.float32)

    def make(suffix: str, precision: str, outlier_weight: float) -> TowerJob:
        return TowerJob("image", OutlierInput(outlier_weight).eval(), "x", lambda b: torch.from_numpy(rows[:b]),
                        tmp_path / f"t{suffix}", precision, [rows[i:i + 16] for i in range(0, 64, 16)])
    return make


# A SigLIP-shaped open_clip model, small: timm's test ViT at its native 160 px with attention pooling (no class token read), a
# bidirectional text tower pooled at the last position, a logit bias, and its own SentencePiece tokenizer.
TINY_SIGLIP = {
    "embed_dim": 64, "init_logit_bias": -10, "custom_text": True,
    "vision_cfg": {"image_size": 160, "timm_model_name": "test_vit", "timm_model_pretrained": False, "timm_pool": "map",
                   "timm_proj": "none"},
    "text_cfg": {"context_length": 32, "vocab_size": 96, "hf_tokenizer_name": "timm/ViT-B-16-SigLIP",
                 "tokenizer_kwargs": {"clean": "canonicalize"}, "width": 64, "heads": 2, "layers": 2, "no_causal_mask": True,
                 "proj_bias": True, "pool_type": "last", "norm_kwargs": {"eps": 1e-6}},
}


@pytest.fixture(scope="session")
def tiny_siglip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """open_clip:CONFIG.json of TINY_SIGLIP, with spiece.model (a SentencePiece Unigram model trained here, SigLIP's
    special ids: pad 0, end 1, unknown 2) and tokenizer_config.json (transformers' SiglipTokenizer) beside it."""
    import json

    import sentencepiece

    folder = tmp_path_factory.mktemp("siglip")
    captions = ["a photo of a cat", "a photo of a dog", "a red circle", "a blue square", "a green triangle",
                "the quick brown fox jumps over the lazy dog", "café naïve résumé", "two big yellow squares"] * 40
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(captions), model_prefix=str(folder / "spiece"), vocab_size=TINY_SIGLIP["text_cfg"]["vocab_size"],
        model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1, character_coverage=1.0, hard_vocab_limit=False,
        minloglevel=2)
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "SiglipTokenizer", "eos_token": "</s>", "pad_token": "</s>", "unk_token": "<unk>",
         "model_max_length": TINY_SIGLIP["text_cfg"]["context_length"], "do_lower_case": True}))
    (folder / "tiny-siglip.json").write_text(json.dumps(TINY_SIGLIP))
    return folder / "tiny-siglip.json"
