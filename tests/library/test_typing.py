"""The public API is typed: mypy --strict passes on a file that uses it like a user."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def test_user_app_passes_mypy_strict() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental",
         str(ROOT / "tests" / "typing" / "user_app.py")],
        capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def test_package_ships_py_typed() -> None:
    import authgate

    assert (ROOT / "src" / "authgate" / "py.typed").exists()
    assert authgate.__file__ is not None
