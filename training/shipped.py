"""Students that ship inside the SDK: what a recipe on locked packaged towers trained (their two projections), a
few MB in the repository, so a user holds a real-data student without a training run or a download:
`clipping-edge export --checkpoint shipped:NAME`.

A shipped student is its trained tensors (those that differ from the same student built fresh from the packages)
plus a JSON record: the student config, the command that trained it, where and what it scored, and a digest of
the packaged towers it was trained on, so a package update that changes them is refused instead of silently
pairing new towers with old projections.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from clipping_edge.atomic import output_kind, write_bytes_atomic, write_json_atomic
from clipping_edge.errors import ClippingEdgeError

from .checkpoint import load_student, save_checkpoint
from .config import StudentConfig
from .models import Student

SHIPPED_DIR = Path(__file__).parent / "shipped"
PREFIX = "shipped:"


def is_shipped(value: str | Path) -> bool:
    return str(value).startswith(PREFIX)


def list_shipped() -> list[str]:
    return sorted(p.stem for p in SHIPPED_DIR.glob("*.json"))


def _fresh(config: StudentConfig) -> Student:
    torch.manual_seed(0)  # the projections' initial values, which the shipped tensors replace anyway
    return Student(config).eval()


def _digest(state: dict[str, torch.Tensor], names: list[str]) -> str:
    digest = hashlib.sha256()
    for name in names:
        digest.update(name.encode() + b"\0" + state[name].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def ship(checkpoint: Path, name: str, record: dict[str, Any]) -> Path:
    """Write SHIPPED_DIR/name.safetensors (the tensors training changed) and name.json (config, digest, `record`)."""
    from safetensors.torch import save

    student, _, meta = load_student(checkpoint)
    if student.config.text.kind != "minilm":
        raise ClippingEdgeError("only students whose text tower reads the packaged MiniLM vocabulary can ship (its "
                                "tokenizer is rebuilt from the package)")
    trained, fresh = student.state_dict(), _fresh(student.config).state_dict()
    changed = sorted(k for k in trained if not torch.equal(trained[k], fresh[k]))
    kept = sorted(k for k in trained if k not in changed)
    size = sum(trained[k].numel() for k in changed)
    if size > 4_000_000:
        raise ClippingEdgeError(f"{checkpoint}: training changed {size:,} values ({len(changed)} tensors), too many to "
                                "ship in the repository: ship a student whose towers were locked")
    write_bytes_atomic(SHIPPED_DIR / f"{name}.safetensors", save({k: trained[k].contiguous() for k in changed}))
    write_json_atomic(SHIPPED_DIR / f"{name}.json", {
        "student": student.config.to_json(), "tokenizer": "minilm",
        "trained_token_ids": meta.get("trained_token_ids"), "shipped_tensors": changed,
        "towers_sha256": _digest(fresh, kept), **record})
    return SHIPPED_DIR / f"{name}.json"


def shipped_checkpoint(spec: str) -> Path:
    """`shipped:NAME` as a checkpoint folder in the cache (built once from the packages and the shipped tensors)."""
    from safetensors.torch import load_file

    from .data.synthetic_cache import cache_dir
    from .tokenizer_packaged import packaged_tokenizer

    name = str(spec)[len(PREFIX):]
    record_path, tensors_path = SHIPPED_DIR / f"{name}.json", SHIPPED_DIR / f"{name}.safetensors"
    if not record_path.is_file() or not tensors_path.is_file():
        raise ClippingEdgeError(f"no shipped student {name!r}: choose one of {', '.join(list_shipped()) or '(none)'}")
    record = json.loads(record_path.read_text(encoding="utf-8"))
    key = hashlib.sha256(record_path.read_bytes() + tensors_path.read_bytes()).hexdigest()[:20]
    out = cache_dir() / "shipped" / f"{name}-{key}"
    if output_kind(out) == "checkpoint":
        return out
    config = StudentConfig.from_json(record["student"])
    student = _fresh(config)
    state = student.state_dict()
    tensors = load_file(str(tensors_path))
    if sorted(tensors) != sorted(record["shipped_tensors"]) or any(tensors[k].shape != state[k].shape for k in tensors):
        raise ClippingEdgeError(f"{tensors_path} does not hold the tensors {record_path.name} names: the shipped "
                                "student is damaged; restore it from the repository")
    kept = sorted(k for k in state if k not in tensors)
    if _digest(state, kept) != record["towers_sha256"]:
        raise ClippingEdgeError(f"shipped student {name!r} was trained on other packaged towers than the installed "
                                "ones (a package update changed their weights): install the versions in "
                                f"{record_path.name} or train it again with the command it records")
    student.load_state_dict({**state, **tensors})
    # Export validates on the training data by default; the shipped student's (real sets) need not be here.
    meta = {"train": {"data": "synthetic"}, "shipped": {k: v for k, v in record.items() if k != "student"},
            "trained_token_ids": record.get("trained_token_ids")}
    tokenizer = out.with_name(out.name + ".tokenizer.json")
    try:
        packaged_tokenizer(record["tokenizer"], config.text.context_length, tokenizer)
        save_checkpoint(out, student, tokenizer, meta)
    finally:  # copied into the checkpoint, or not needed: never left in the cache
        tokenizer.unlink(missing_ok=True)
    return out



def main(argv: list[str] | None = None) -> None:
    """python -m clipping_edge.training.shipped RUN NAME: ship RUN/checkpoint as NAME, recording RUN's command and figures."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m clipping_edge.training.shipped", description=main.__doc__)
    parser.add_argument("run", type=Path, help="a run folder written by `clipping-edge train` (RUN/checkpoint)")
    parser.add_argument("name", help="the shipped student's name (export --checkpoint shipped:NAME)")
    parser.add_argument("--command", required=True, help="the training command, recorded to reproduce it")
    parser.add_argument("--trained-on", required=True, help="what the data was, in words")
    args = parser.parse_args(argv)
    metrics = json.loads((args.run / "metrics.json").read_text(encoding="utf-8"))
    log = [json.loads(line) for line in (args.run / "log.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    scored = [row for row in log if any(k.endswith("/zero_shot_top1") for k in row)]
    last = scored[-1] if scored else {}
    held_out = ", ".join(f"{k.split('/')[0]} {100 * v:.1f} %" for k, v in last.items() if k.endswith("/zero_shot_top1"))
    path = ship(args.run / "checkpoint", args.name, {
        "command": args.command, "trained_on": args.trained_on, "test_metrics": metrics, "last_validation": last or None,
        "held_out": f"zero-shot top-1 on held-out validation splits: {held_out}" if held_out else "not measured"})
    print(f"shipped {args.name}: {path} and {path.with_suffix('.safetensors')}")


if __name__ == "__main__":
    main()
