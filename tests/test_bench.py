"""Benchmark scripts start from anywhere and answer --help without doing any work."""

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
SCRIPTS = sorted(BENCH.glob("*.py"))


def test_no_script_shadows_a_standard_library_module():
    shadowing = [path.name for path in SCRIPTS if path.stem in sys.stdlib_module_names]
    assert shadowing == []


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
def test_help_from_another_folder(script, tmp_path):
    result = subprocess.run(
        [sys.executable, str(script), "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage:"), result.stdout
    # --help stops before any work: nothing written where it ran.
    assert list(tmp_path.iterdir()) == []
