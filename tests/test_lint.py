"""The tree stays linted and formatted (ruff, configured in pyproject.toml): `make lint` fixes nothing,
it only checks; `ruff check --fix .` and `ruff format .` do the work."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RUFF = Path(sys.executable).parent / "ruff"


@pytest.mark.parametrize("args", [["check", "."], ["format", "--check", "."]], ids=["lint", "format"])
def test_ruff_is_clean(args):
    if not RUFF.exists():
        pytest.fail(f"{RUFF} is missing: ruff is installed by the project's test extra (make install)")
    r = subprocess.run([str(RUFF), *args], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"ruff {' '.join(args)}:\n{r.stdout[-4000:]}{r.stderr[-2000:]}"
