"""Every DAG the DagBag finds runs end to end: ``dag.test()`` against the sandbox, run state SUCCESS.

Parametrised over the DAG ids found in ``dags/`` at collection time, with the pipelines file we ship
(``include/config/pipelines.yaml``) made fast for tests (short status polls, no retries). So a new DAG
file, or a new pipeline in the shipped config, is run here without anyone writing a test for it; the
hand-written DAG tests (test_calls_dag.py, test_plans_dag.py, test_requests_dag.py) check the details.

* ``example_requests_consumer`` is scheduled on the requests Assets: it runs after the requests export
  DAGs it consumes have run, and must have read the files they wrote.
* A DAG file that defines no DAG by design is listed in :data:`FILES_WITHOUT_DAGS` with its reason;
  any other DAG file must yield at least one DAG with the shipped config.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import DAGS, REPO, load_bag, task_states, xcom

pytestmark = [pytest.mark.integration, pytest.mark.airflow]

SHIPPED_CONFIG = REPO / "include" / "config" / "pipelines.yaml"
CONSUMER = "example_requests_consumer"
REQUESTS_EXPORT_PREFIX = "calltouch_requests_export__"

#: DAG files that define no DAG on purpose (a valid config), with the reason.
FILES_WITHOUT_DAGS = {
    "calltouch_config_errors.py": "shows the pipelines file's errors as its import error; defines no DAG",
    "calltouch_account_extract.py": "one DAG per `account`; the shipped config names none "
    "(tests/dags/test_account_extract.py runs it)",
}


def _fast_config() -> Path:
    """The shipped pipelines file with test-speed defaults (same pipelines, hence the same DAG ids)."""
    doc = yaml.safe_load(SHIPPED_CONFIG.read_text(encoding="utf-8"))
    doc.setdefault("defaults", {}).update(
        {"status_poll_seconds": 0.5, "status_timeout_hours": 0.05, "retries": 0}
    )
    path = Path(tempfile.mkdtemp(prefix="ctm-every-dag-")) / "pipelines.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


CONFIG = _fast_config()


@contextmanager
def _config_env() -> Any:
    before = os.environ.get("CALLTOUCH_METRIKA_CONFIG")
    os.environ["CALLTOUCH_METRIKA_CONFIG"] = str(CONFIG)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("CALLTOUCH_METRIKA_CONFIG", None)
        else:
            os.environ["CALLTOUCH_METRIKA_CONFIG"] = before


def _collect() -> tuple[list[str], dict[str, list[str]]]:
    """The DAG ids in ``dags/`` with :data:`CONFIG`, and the ids each DAG file defines."""
    with _config_env():
        bag = load_bag(DAGS)
    by_file: dict[str, list[str]] = {p.name: [] for p in DAGS.glob("*.py") if not p.name.startswith("_")}
    for dag_id, dag in bag.dags.items():
        by_file.setdefault(Path(dag.fileloc).name, []).append(dag_id)
    return sorted(bag.dags), by_file


DAG_IDS, DAGS_BY_FILE = _collect()


def test_every_dag_file_defines_a_dag_or_says_why_not() -> None:
    assert DAG_IDS, "no DAG found in dags/"
    empty = sorted(f for f, ids in DAGS_BY_FILE.items() if not ids and f not in FILES_WITHOUT_DAGS)
    assert not empty, f"DAG files without a DAG (list them in FILES_WITHOUT_DAGS with a reason): {empty}"


@pytest.fixture(scope="module")
def storage_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One storage root for every run here.

    ``dag.test()`` serialises every DAG of the folder, and an Asset is identified by its name *and*
    URI (which holds the storage root): a second root under the same name would leave the Asset
    inactive in the metadata DB and fail the producing task.
    """
    return tmp_path_factory.mktemp("every-dag-data")


@pytest.fixture
def env(storage_root: Path, monkeypatch: pytest.MonkeyPatch, sandbox: Any, airflow_db: Path) -> Any:
    """The fast shipped config, the module's storage root, a reset sandbox, a migrated metadata DB."""
    monkeypatch.setenv("CALLTOUCH_METRIKA_CONFIG", str(CONFIG))
    monkeypatch.setenv("CALLTOUCH_METRIKA_DATA", str(storage_root))
    return sandbox


def _run(dag: Any) -> Any:
    from airflow.utils.state import DagRunState

    dr = dag.test(logical_date=None)  # a manual run, as a user triggers it: the timetable picks the day
    assert dr.state == DagRunState.SUCCESS, f"{dag.dag_id}: {task_states(dr)}"
    return dr


@pytest.mark.parametrize("dag_id", DAG_IDS)
def test_dag_runs_to_success_against_the_sandbox(dag_id: str, env: Any) -> None:
    bag = load_bag(DAGS)
    if dag_id == CONSUMER:  # scheduled on the requests Assets: first run what produces them
        producers = sorted(i for i in bag.dags if i.startswith(REQUESTS_EXPORT_PREFIX))
        assert producers, f"{CONSUMER} consumes the requests export, but no export DAG is defined"
        for producer in producers:
            _run(bag.dags[producer])
    dr = _run(bag.dags[dag_id])
    states = task_states(dr)
    assert states and all(s in ("success", "skipped") for s in states.values()), states
    if dag_id == CONSUMER:
        summary = xcom(dr, "summarise_requests")
        assert summary["files"], summary  # it read what the export DAGs wrote
