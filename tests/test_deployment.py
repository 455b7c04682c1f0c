"""What a deployment relies on besides the DAGs: the Makefile's front door, relative start dates, the
``notify`` block of pipelines.yaml, and connection types Airflow does not warn about.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent


def test_make_help_lists_every_target() -> None:
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    phony = re.search(r"^\.PHONY:(.*)$", makefile, re.MULTILINE)
    assert phony is not None
    targets = set(phony.group(1).split())
    assert {"up", "down", "airflow", "bench", "clean", "dist"} <= targets
    out = subprocess.run(["make", "-s", "help"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    listed = {m.group(1) for m in re.finditer(r"^make ([a-z-]+)", out, re.MULTILINE)}
    assert targets - {"help"} <= listed, f"make help omits {sorted(targets - {'help'} - listed)}"


def _load(tmp_path: Path, **pipeline: Any) -> Any:
    from calltouch_metrika.config import load_config

    base = {"name": "p", "site_id": 1, "counter_id": 2, "start_date": "2026-01-01"}
    path = tmp_path / "pipelines.yaml"
    path.write_text(yaml.safe_dump({"pipelines": [{**base, **pipeline}]}), encoding="utf-8")
    return load_config(path).pipelines[0]


def test_start_date_may_be_days_relative_to_today(tmp_path: Path) -> None:
    assert _load(tmp_path, start_date=-7).start_date == date.today() - timedelta(days=7)
    assert _load(tmp_path, start_date=0).start_date == date.today()
    assert _load(tmp_path, start_date="2026-11-18").start_date == date(2026, 11, 18)
    with pytest.raises(Exception, match="start_date"):
        _load(tmp_path, start_date=7)


def test_the_example_pipelines_start_a_week_ago() -> None:
    from calltouch_metrika.config import load_config

    config = load_config(REPO / "include" / "config" / "pipelines.yaml")
    assert config.pipelines
    for pipeline in config.pipelines:
        assert pipeline.start_date == date.today() - timedelta(days=7), pipeline.name


def test_notify_block_is_validated(tmp_path: Path) -> None:
    p = _load(tmp_path, notify={"to": ["a@example.test"], "on": ["failure", {"rejects_over": 20}]})
    assert p.notify.conn_id == "smtp_default"
    assert p.notify.events == ["failure", "rejects_over"] and p.notify.rejects_over_percent == 20
    with pytest.raises(Exception, match="notify"):
        _load(tmp_path, notify={"to": ["a@example.test"], "on": ["failures"]})
    with pytest.raises(Exception, match="notify"):
        _load(tmp_path, notify={"to": []})
    with pytest.raises(Exception, match="rejects_over"):
        _load(tmp_path, notify={"to": ["a@example.test"], "on": [{"rejects_over": 120}]})


def test_notify_wires_the_notifier_as_task_callbacks(tmp_path: Path) -> None:
    from calltouch_metrika.dag_factory import pipeline_default_args
    from calltouch_metrika.notifications import PipelineNotifier

    assert "on_failure_callback" not in pipeline_default_args(_load(tmp_path))
    args = pipeline_default_args(_load(tmp_path, notify={"to": ["a@example.test"]}))
    (on_failure,) = args["on_failure_callback"]
    assert isinstance(on_failure, PipelineNotifier) and on_failure.callback == "failure"
    assert "on_success_callback" not in args  # nothing to report on success with on: [failure]
    args = pipeline_default_args(
        _load(tmp_path, notify={"to": ["a@example.test"], "on": ["linkage_failure"]})
    )
    assert args["on_success_callback"][0].callback == "success"


def _uri_warnings(conn_type: str) -> list[str]:
    """What Airflow logs while turning a connection of ``conn_type`` into its URI (every fetch does)."""
    import structlog
    from airflow.models.connection import Connection

    with structlog.testing.capture_logs() as logs:
        Connection(conn_id="m", conn_type=conn_type, host="http://127.0.0.1:8765", password="x").get_uri()
    return [str(entry.get("event")) for entry in logs]


def test_the_metrika_connection_type_draws_no_rfc3986_warning() -> None:
    from calltouch_metrika.hooks.metrika import MetrikaHook

    assert MetrikaHook.conn_type == "yandexmetrika"
    assert not [w for w in _uri_warnings(MetrikaHook.conn_type) if "RFC3986" in w]
    # The old name still draws it (this is what the rename removes), and still works through the hook.
    assert [w for w in _uri_warnings("yandex_metrika") if "RFC3986" in w]


def test_make_airflow_without_a_running_stack_says_how_to_start_one(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tools.local_airflow", "airflow", "dags", "list"],
        cwd=REPO,
        env={**os.environ, "LOCAL_AIRFLOW_STATE_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1 and "make up" in proc.stderr, proc.stderr


def test_the_env_file_sets_the_stack_for_a_plain_shell(tmp_path: Path) -> None:
    """``source .airflow-local/env`` gives a shell every setting the stack's processes have."""
    from tools.local_airflow.stack import LocalAirflow

    stack = LocalAirflow(home=tmp_path / "home", api_port=18080, fernet_key="k" * 43 + "=")
    path = tmp_path / "env"
    stack.write_env_file(path)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    shell = subprocess.run(
        ["bash", "-c", f'source "{path}" && env'],
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    got = dict(line.split("=", 1) for line in shell.splitlines() if "=" in line)
    expected = stack.env()
    for key in (
        "AIRFLOW_HOME",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
        "AIRFLOW__CORE__FERNET_KEY",
        "AIRFLOW__API_AUTH__JWT_SECRET",
        "AIRFLOW__CORE__TEST_CONNECTION",
        "AIRFLOW__CORE__DAGS_FOLDER",
    ):
        assert got.get(key) == expected[key], key
    assert got["PATH"].split(":")[0] == str(Path(sys.executable).parent)
