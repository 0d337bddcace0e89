"""torch.distributed on CPU with Gloo, 2 processes launched by `clipping-edge train --nproc 2` (torchrun): the same training as one
process with the global batch, sharded bank extraction equal to one process's, and resumption."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from clipping_edge.training.config import TrainConfig
from clipping_edge.training.trainer import train

# `clipping-edge train --nproc 2`, which launches torchrun --standalone with `python -m clipping_edge.training`
LAUNCH = [sys.executable, "-m", "clipping_edge.cli", "train", "--nproc", "2"]
TOLERANCE = 1e-5  # largest |weight difference| after 2 epochs, one process vs two


def flags(cfg: dict) -> list[str]:
    out = []
    for key, value in cfg.items():
        out += [f"--{key.replace('_', '-')}", str(value)]
    return out


def torchrun(cfg: dict, **popen) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    return subprocess.Popen([*LAUNCH, *flags(cfg)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **popen)


def finish(proc: subprocess.Popen, timeout: float = 300) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-3000:]
    return out


def descendants(pid: int) -> list[int]:
    """Child processes, recursively (torchrun's workers run in sessions of their own)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return [d for c in children for d in (*descendants(c), c)]


def log_of(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("method,accum_steps", [("clip", 1), ("clip-ping", 1), ("clip-ping", 2)])
def test_two_processes_train_like_one_with_the_global_batch(method: str, accum_steps: int, small_data: Path,
                                                          tmp_path: Path, batchnorm_free_student: str):
    # Gradient clipping is active throughout (the gradient norm exceeds --grad-clip 1.0 at every step here).
    common = dict(data=str(small_data), student=batchnorm_free_student, method=method, epochs=2, limit=128,
                  workers=0, warmup_steps=2, lr=3e-3, teacher_image_size=64, support_size=100, accum_steps=accum_steps)
    two = finish(torchrun({**common, "out": tmp_path / "two", "batch_size": 16}))
    assert "batch 16 x 2 process(es)" in two
    torch.set_num_threads(1)
    train(TrainConfig(**{**common, "out": str(tmp_path / "one"), "batch_size": 32}))
    one_log, two_log = log_of(tmp_path / "one"), log_of(tmp_path / "two")
    for a, b in zip(one_log, two_log):
        assert abs(a["loss"] - b["loss"]) < 1e-4, (a, b)
    one = load_file(str(tmp_path / "one" / "checkpoint" / "model.safetensors"))
    two = load_file(str(tmp_path / "two" / "checkpoint" / "model.safetensors"))
    worst = max((one[k] - two[k]).abs().max().item() for k in one)
    assert worst < TOLERANCE
    meta = json.loads((tmp_path / "two" / "checkpoint" / "config.json").read_text())
    assert meta["world_size"] == 2 and meta["epoch"] == 2


def _extract_banks(rank: int, world: int, init_file: str, data: str, root: str) -> None:
    import torch.distributed as dist

    from clipping_edge.training.banks import build_banks
    from clipping_edge.training.data.pairs import read_pairs
    from clipping_edge.training.distributed import Distributed
    from clipping_edge.training.teachers import load_image_teacher, load_text_teacher

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    build_banks(read_pairs(Path(data) / "train", limit=48), load_image_teacher("efficientnet-lite0", 64),
                load_text_teacher("minilm"), root=Path(root), batch_size=8, workers=0,
                dist=Distributed(rank, world), shard_rows=10)
    dist.destroy_process_group()


def _build_the_same_bank(start, data: str, root: str, result: str) -> None:
    from clipping_edge.training.banks import build_banks
    from clipping_edge.training.data.pairs import read_pairs
    from clipping_edge.training.teachers import load_image_teacher, load_text_teacher

    torch.set_num_threads(1)
    pairs, teachers = read_pairs(Path(data) / "train", limit=48), (load_image_teacher("efficientnet-lite0", 64),
                                                                   load_text_teacher("minilm"))
    start.wait()  # both ask for the bank at the same moment, as two ablation runs launched together do
    banks = build_banks(pairs, *teachers, root=Path(root), batch_size=8, workers=0, shard_rows=10)
    Path(result).write_text(json.dumps({"path": str(banks.path), "reused": banks.reused}))


def test_two_runs_asking_for_the_same_bank_at_once_extract_it_once(small_data: Path, tmp_path: Path):
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    start = context.Barrier(2)
    results = [tmp_path / f"run{i}.json" for i in range(2)]
    runs = [context.Process(target=_build_the_same_bank, args=(start, str(small_data), str(tmp_path / "banks"), str(r)))
            for r in results]
    for run in runs:
        run.start()
    for run in runs:
        run.join(timeout=300)
    assert [run.exitcode for run in runs] == [0, 0]  # without the lock one merged shards the other had removed
    built = [json.loads(r.read_text()) for r in results]
    assert built[0]["path"] == built[1]["path"]
    assert sorted(b["reused"] for b in built) == [False, True]  # one extracted, the other waited and read it
    assert [p.name for p in (tmp_path / "banks").iterdir()] == [Path(built[0]["path"]).name]  # no shards left behind


def test_sharded_bank_extraction_equals_one_process_and_resumes(small_data: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch):
    import clipping_edge.training.banks as banks_module
    from clipping_edge.training.data.pairs import read_pairs
    from clipping_edge.training.teachers import load_image_teacher, load_text_teacher

    torch.multiprocessing.spawn(_extract_banks, args=(2, str(tmp_path / "init"), str(small_data), str(tmp_path / "two")),
                                nprocs=2)
    sharded = banks_module.open_banks(next(p for p in (tmp_path / "two").iterdir() if p.is_dir()))
    assert sharded.stats["world"] == 2 and sharded.stats["shards"] == 5

    pairs = read_pairs(small_data / "train", limit=48)
    teachers = load_image_teacher("efficientnet-lite0", 64), load_text_teacher("minilm")
    real_extract, calls = banks_module._extract_shard, []

    def die_after_two(pairs, rows, *args):
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed during the third shard
        calls.append(rows)
        return real_extract(pairs, rows, *args)

    monkeypatch.setattr(banks_module, "_extract_shard", die_after_two)
    with pytest.raises(KeyboardInterrupt):
        banks_module.build_banks(pairs, *teachers, root=tmp_path / "one", batch_size=8, workers=0, shard_rows=10)
    calls.clear()
    monkeypatch.setattr(banks_module, "_extract_shard", lambda pairs, rows, *a: calls.append(rows) or real_extract(pairs, rows, *a))
    single = banks_module.build_banks(pairs, *teachers, root=tmp_path / "one", batch_size=8, workers=0, shard_rows=10)
    assert [r.start for r in calls] == [20, 30, 40] and single.stats["resumed_shards"] == 2  # the first two were kept
    np.testing.assert_allclose(single.image.astype(np.float32), sharded.image.astype(np.float32), atol=2e-3)
    np.testing.assert_allclose(single.text.astype(np.float32), sharded.text.astype(np.float32), atol=2e-3)
    assert not list((tmp_path / "one").glob("*.partial"))


def test_a_killed_two_process_run_resumes_in_one_process(small_data: Path, tmp_path: Path):
    out = tmp_path / "run"
    cfg = dict(data=str(small_data), out=out, student="test-tiny", method="clip", epochs=4, limit=512, batch_size=16,
               workers=0, warmup_steps=2)
    proc = torchrun(cfg)
    deadline = time.time() + 240
    while not (out / "checkpoint" / "config.json").is_file():
        assert proc.poll() is None and time.time() < deadline, "the run ended before its first checkpoint"
        time.sleep(0.05)
    for pid in [*descendants(proc.pid), proc.pid]:  # the launcher and both workers, mid-run
        os.kill(pid, signal.SIGKILL)
    proc.wait()
    done = json.loads((out / "checkpoint" / "config.json").read_text())["epoch"]
    assert 1 <= done < 4
    torch.set_num_threads(1)
    train(TrainConfig(**{**cfg, "out": str(out), "resume": True}))
    log = log_of(out)
    assert [r["epoch"] for r in log] == [1, 2, 3, 4]
    assert json.loads((out / "checkpoint" / "config.json").read_text())["world_size"] == 1
