"""``make demo`` is the front door: it must pass on a fresh clone, and again when run a second time.

Runs ``tools/demo.py`` (what ``make demo`` runs) twice as a user would and checks its exit status and
summary: one upload per day of the run (the day and its lookback days), each reconciled, each call once.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers import REPO

pytestmark = [pytest.mark.integration]


def test_make_demo_passes_and_passes_again() -> None:
    for attempt in (1, 2):
        proc = subprocess.run(
            [sys.executable, str(REPO / "tools" / "demo.py")],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, f"attempt {attempt}:\n{out[-4000:]}"
        assert "DEMO FAILED" not in out
        assert out.count("(reconciled)") == 3 and "DOES NOT RECONCILE" not in out, out[-3000:]
        assert "uploads: 3," in out and "each once" in out, out[-3000:]
