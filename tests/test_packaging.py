"""petseg as a built wheel: the recipe files travel inside it (no path into a checkout)."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_wheel_carries_the_recipes_and_the_bench_finds_them(tmp_path):
    pytest.importorskip("setuptools", minversion="68")
    source = tmp_path / "source"  # a copy: no build/ folder of an earlier build can leak in
    for part in ("src", "configs"):
        shutil.copytree(ROOT / part, source / part, ignore=shutil.ignore_patterns("*.egg-info"))
    for part in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / part, source / part)
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "--no-index", "-w", str(tmp_path / "dist"), str(source)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr
    (wheel,) = (tmp_path / "dist").glob("petseg-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for recipe in ("fast.yaml", "quick.yaml", "long.yaml", "full.yaml", "sweeps/round9.yaml"):
        assert f"petseg/configs/{recipe}" in names
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    # a fresh interpreter that sees the unpacked wheel and no checkout
    found = subprocess.run(
        [sys.executable, "-c", "from petseg.bench import FAST_CONFIG; print(FAST_CONFIG)"],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
        env={"PYTHONPATH": str(site), "PATH": ""},
    )  # fmt: skip
    assert found.returncode == 0, found.stderr
    path = Path(found.stdout.strip())
    assert path.is_file() and path.is_relative_to(site)
    assert path.read_text() == (ROOT / "configs" / "fast.yaml").read_text()
