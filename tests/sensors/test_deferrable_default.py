"""``deferrable`` of our sensors defaults from Airflow's ``[operators] default_deferrable``, true when unset.

Read when the sensor classes are defined (as the providers' ``conf.getboolean(...)`` defaults are), so
each case runs in a fresh interpreter with its own environment.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ENV = "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE"

_PROBE = textwrap.dedent(
    """
    import json
    from calltouch_metrika.sensors.calltouch import PlansImportStatusSensor
    from calltouch_metrika.sensors.metrika import UploadStatusSensor

    print(json.dumps([
        UploadStatusSensor(task_id="w", counter_id=1, upload=None).deferrable,
        PlansImportStatusSensor(task_id="p", imports=[]).deferrable,
        UploadStatusSensor(task_id="x", counter_id=1, upload=None, deferrable=False).deferrable,
    ]))
    """
)


def _deferrable(tmp_path: Path, setting: str | None, *, cfg: str | None = None) -> list[bool]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV)}
    home = tmp_path / "home"
    home.mkdir(parents=True)
    env["AIRFLOW_HOME"] = str(home)  # its own airflow.cfg (none unless ``cfg``)
    if cfg is not None:
        (home / "airflow.cfg").write_text(cfg, encoding="utf-8")
    if setting is not None:
        env[ENV] = setting
    out = subprocess.run(
        [sys.executable, "-c", _PROBE],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env=env,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(("setting", "want"), [(None, True), ("False", False), ("true", True)])
def test_default_follows_the_environment(tmp_path: Path, setting: str | None, want: bool) -> None:
    assert _deferrable(tmp_path, setting) == [want, want, False]


def test_a_generated_airflow_cfg_does_not_turn_deferral_off(tmp_path: Path) -> None:
    """Airflow writes ``default_deferrable = false`` into every airflow.cfg it generates (the e2e stack's
    did, and its sensors then poked on a worker instead of deferring): that line is not a choice."""
    assert _deferrable(tmp_path, None, cfg="[operators]\ndefault_deferrable = False\n") == [True, True, False]
    assert _deferrable(tmp_path / "b", "false", cfg="[operators]\ndefault_deferrable = True\n") == [
        False,
        False,
        False,
    ]
