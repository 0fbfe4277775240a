"""What the two fresh-machine commands do, read from `make --dry-run`, and the package metadata."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def dry_run(*args: str) -> str:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    # a venv that does not exist, so every install step is shown; no "Entering directory" lines
    # when the tests themselves run under `make test`
    return subprocess.run(["make", "--dry-run", "--no-print-directory", "VENV=/nonexistent/venv", *args], cwd=ROOT,
                          capture_output=True, text=True, check=True).stdout


def test_make_run_installs_only_the_web_extra_and_takes_host_and_port():
    out = dry_run("run", "HOST=0.0.0.0", "PORT=8443")
    assert 'pip install -q -e ".[web]"' in out
    assert "torch" not in out and "desktop" not in out and "dev]" not in out and "apt-get" not in out
    assert out.strip().splitlines()[-1].endswith("moodlens serve --host 0.0.0.0 --port 8443")


def test_make_test_installs_every_extra_and_debian_packages_without_recommends():
    out = dry_run("test")
    assert '".[train,web,desktop,distributed,dev]"' in out and "--no-install-recommends" in out
    assert "--extra-index-url" not in out  # PyPI's torch unless TORCH_INDEX says otherwise
    assert "--extra-index-url https://example.invalid/cpu" in dry_run("test", "TORCH_INDEX=https://example.invalid/cpu")


def test_the_license_is_an_spdx_expression():
    if sys.version_info < (3, 11):
        pytest.skip("tomllib needs Python 3.11")
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["license"] == "MIT"
    requires = project["build-system"]["requires"]
    assert any(r.startswith("setuptools>=") and int(r.split(">=")[1].split(".")[0]) >= 77 for r in requires)
