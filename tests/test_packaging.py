"""What an install gets: one top-level import name, every module and data file the repository's folders hold, and
the commands of the packages above the runtime through entry points."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"clipping_edge": "clipping_edge", "training": "clipping_edge/training", "export": "clipping_edge/export",
           "benchmarks": "clipping_edge/benchmarks"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    out, source = tmp_path_factory.mktemp("wheel"), tmp_path_factory.mktemp("source") / "clipping-edge"
    # Built from a copy: setuptools leaves build/ and *.egg-info in the tree it builds.
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", ".venv", "runs", "node_modules", "build",
                                                                "*.egg-info", "__pycache__", ".pytest_cache"))
    # No build isolation: the test environment's setuptools builds it, with no index to reach.
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                             "--wheel-dir", str(out), str(source)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    (path,) = out.glob("clipping_edge-*.whl")
    return zipfile.ZipFile(path)


def test_a_wheel_installs_one_top_level_name(wheel: zipfile.ZipFile):
    tops = {name.split("/")[0] for name in wheel.namelist() if not name.split("/")[0].endswith(".dist-info")}
    assert tops == {"clipping_edge"}
    (top_level,) = [n for n in wheel.namelist() if n.endswith(".dist-info/top_level.txt")]
    assert wheel.read(top_level).decode().split() == ["clipping_edge"]


def test_the_wheel_holds_every_module_and_data_file_under_its_installed_name(wheel: zipfile.ZipFile):
    names = set(wheel.namelist())
    expected = set()
    for folder, installed in FOLDERS.items():
        for path in (ROOT / folder).rglob("*"):
            relative = path.relative_to(ROOT / folder)
            if folder == "clipping_edge" and relative.parts[0] in FOLDERS:
                continue
            if path.suffix in (".py", ".json", ".safetensors") and "__pycache__" not in relative.parts:
                expected.add(f"{installed}/{relative.as_posix()}")
    assert expected - names == set()
    assert any(n.startswith("clipping_edge/training/model_configs/") for n in expected)
    assert any(n.startswith("clipping_edge/training/shipped/") for n in expected)


def test_the_entry_points_name_each_package_s_commands(wheel: zipfile.ZipFile):
    from importlib.metadata import EntryPoint

    from clipping_edge.commands import ENTRY_POINT_GROUP, CommandGroup

    (listing,) = [n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")]
    text = wheel.read(listing).decode()
    section = text.split(f"[{ENTRY_POINT_GROUP}]", 1)[1].split("\n[", 1)[0]
    points = [EntryPoint(*(part.strip() for part in line.split("=", 1)), ENTRY_POINT_GROUP)
              for line in section.splitlines() if "=" in line]
    assert sorted(p.name for p in points) == ["benchmarks", "demo", "export", "training"]
    assert all(isinstance(p.load(), CommandGroup) for p in points)


def test_a_device_install_lists_the_commands_it_lacks_with_their_extra(tmp_path: Path):
    """Without torch (a device install): --help still lists train and export, each naming the extra that brings
    it, and running one says so in one line; the runtime's commands and the torch-free benchmark say nothing."""
    code = ("import sys; sys.modules['torch'] = None; from clipping_edge.cli import build_parser; "
            "build_parser().print_help()")
    wide = {**os.environ, "COLUMNS": "400"}  # one line a command
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=wide)
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line.startswith("    ") and line.split()}
    assert lines["train"].endswith("[this install lacks torch: pip install 'clipping-edge[train]']")
    assert lines["export"].endswith("[this install lacks torch: pip install 'clipping-edge[export]']")
    assert all("lacks" not in lines[name] for name in ("classify", "index", "info", "verify", "benchmark"))
    run = subprocess.run([sys.executable, "-c", "import sys; sys.modules['torch'] = None; from clipping_edge.cli import "
                          "main; sys.exit(main(['eval', '--checkpoint', 'c']))"], capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 2 and run.stderr.count("\n") == 1
    assert "`clipping-edge eval` needs torch, which this install lacks: pip install 'clipping-edge[train]'" in run.stderr

