"""Write files and directories so that readers see either nothing or the complete result, and never
replace what a user owns.

An output directory carries a small marker naming its kind (bundle, checkpoint, dataset, ...). An
existing path is replaced only when it is our own previous output of the same kind (or empty), never
when it holds one of the command's inputs; `force=True` replaces anything else, once the new output
is complete. Temporary siblings carry the writer's pid, so the next writer of the same output removes
those whose process is gone.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

from .errors import ClippingEdgeError

MARKER = ".clipping-edge-output"


def umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _honour_umask(path: Path, directory: bool) -> None:
    """mkdtemp/mkstemp create 0700/0600; the finished output gets the permissions a plain mkdir/open would."""
    path.chmod((0o777 if directory else 0o666) & ~umask())


def output_kind(path: Path) -> str | None:
    """The kind of clipping-edge output a directory holds, or None if it is not one of ours.
    Only the marker counts: file names alone (a user's folder may hold a manifest.json or a log.jsonl) never do."""
    marker = path / MARKER
    if not marker.is_file():
        return None
    try:
        kind = json.loads(marker.read_text(encoding="utf-8")).get("kind")
        return kind if isinstance(kind, str) else None
    except (ValueError, OSError, AttributeError):
        return None


def _inside(child: Path, parent: Path) -> bool:
    child, parent = child.resolve(), parent.resolve()
    return child == parent or parent in child.parents


def check_replaceable(target: str | os.PathLike[str], kind: str, inputs: Iterable[str | os.PathLike[str] | None] = (),
                      force: bool = False) -> None:
    """Raise unless `target` may become a new `kind` output: absent, empty, or our own `kind` (any with
    `force`); never when it holds an input. Called before the work starts, so a refusal costs nothing."""
    target = Path(target)
    for source in inputs:
        if source is not None and str(source) and Path(source).exists() and _inside(Path(source), target):
            raise ClippingEdgeError(f"--out {target} holds the input {source}: writing there would delete it; "
                                    "choose another --out")
    if not (target.exists() or target.is_symlink()):
        return
    if target.is_dir() and not target.is_symlink():
        found = output_kind(target)
        if found == kind or not any(target.iterdir()):
            return
        what = f"a clipping-edge {found}" if found else "files clipping-edge did not write"
    else:
        what = "a file" if not target.is_symlink() else "a symbolic link"
    if not force:
        raise ClippingEdgeError(f"{target} already exists and holds {what}, not a previous {kind}: choose another "
                                "output path, or pass --force to replace it")


def claim_directory(target: str | os.PathLike[str], kind: str, inputs: Iterable[str | os.PathLike[str] | None] = (),
                    force: bool = False) -> Path:
    """For outputs written in place over time (a training run): check `target` may be a `kind` output, create it
    and mark it as ours (one process of a distributed run does this; the others wait for it)."""
    target = Path(target)
    check_replaceable(target, kind, inputs, force)
    target.mkdir(parents=True, exist_ok=True)
    if output_kind(target) != kind:
        write_bytes_atomic(target / MARKER, (json.dumps({"kind": kind}) + "\n").encode())
    return target


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def remove_stale_siblings(target: Path) -> None:
    """Temporary siblings of `target` left by writers that were killed (their pid is gone)."""
    if not target.parent.is_dir():
        return
    for sibling in target.parent.glob(f".{target.name}.*.tmp"):
        pid = sibling.name[len(target.name) + 2:].split(".", 1)[0]
        if pid.isdigit() and not _pid_alive(int(pid)):
            _remove(sibling)


def _swap_names(target: Path) -> tuple[Path, Path]:
    return target.with_name(f".{target.name}.new"), target.with_name(f".{target.name}.old")


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """An exclusive lock held across processes on `path`: a directory (nothing is created), or a lock file (created
    if missing; it stays, as removing it would race). Not re-entrant: a process must not take it twice."""
    import fcntl

    fd = os.open(path, os.O_RDONLY) if path.is_dir() else os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def swap_lock(target: Path) -> contextlib.AbstractContextManager[None]:
    """Held while an output's names move, on the folder that holds it: a writer between its two renames is never
    finished or undone by another writer or a reader at the same time, and no lock file is left beside the output."""
    return exclusive_lock(target.parent)


def recover(target: str | os.PathLike[str]) -> Path:
    """Finish a swap that a crash interrupted: with `target` gone, a complete `.new` (the finished output)
    or else the `.old` (the previous one) becomes `target` again. Returns `target`."""
    target = Path(target)
    new, old = _swap_names(target)
    if not (new.exists() or old.exists()):
        return target
    with swap_lock(target):
        if not target.exists():
            for candidate in (new, old):
                if candidate.is_dir():
                    candidate.rename(target)
                    break
        if target.exists():
            for leftover in (new, old):
                _remove(leftover)
    return target


@contextlib.contextmanager
def atomic_directory(target: str | os.PathLike[str], kind: str, inputs: Iterable[str | os.PathLike[str] | None] = (),
                     force: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling directory; on success it replaces `target`, on error it is removed.

    `target` must be replaceable (see check_replaceable); the check runs again before the swap, so an
    output that appeared meanwhile is not lost either."""
    target = Path(target)
    inputs = list(inputs)
    check_replaceable(target, kind, inputs, force)
    target.parent.mkdir(parents=True, exist_ok=True)
    recover(target)
    remove_stale_siblings(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        (tmp / MARKER).write_text(json.dumps({"kind": kind}) + "\n", encoding="utf-8")
        _honour_umask(tmp, directory=True)
        recover(target)  # a writer that died between its renames meanwhile
        with swap_lock(target):
            check_replaceable(target, kind, inputs, force)
            new, old = _swap_names(target)
            tmp.rename(new)  # from here on the finished output survives a crash (see recover)
            if target.exists() or target.is_symlink():
                _remove(old)
                target.rename(old)
                new.rename(target)
                _remove(old)
            else:
                new.rename(target)
    except BaseException:
        _remove(tmp)
        raise


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary sibling path to write; on success it replaces `path`, on any error (a full disk,
    Ctrl-C) it is removed and `path` is as it was. A failed write names the file, not only its errno."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        _honour_umask(tmp, directory=False)
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        code = exc.errno if isinstance(exc, OSError) else _native_os_error(exc)
        if code is not None and getattr(exc, "filename", None) is None:  # a failed write: say which output it was
            raise OSError(code, os.strerror(code), str(path)) from exc
        raise


def _native_os_error(exc: BaseException) -> int | None:
    """The errno inside a Rust library's plain Exception ("No space left on device (os error 28)", tokenizers)."""
    match = re.search(r"\(os error (\d+)\)", str(exc)) if isinstance(exc, Exception) else None
    return int(match.group(1)) if match else None


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_file(path) as tmp, open(tmp, "wb") as f:
        f.write(data)


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> None:
    write_bytes_atomic(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)
