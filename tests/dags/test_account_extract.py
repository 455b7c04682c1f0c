"""Issue 15: one extract per Calltouch account and day (``account``), through real Airflow and the sandbox.

* the account DAG fetches every site of the account in one task, writes each site's files and each
  pipeline's summary; the pipelines' DAGs then upload without a single Calltouch request, exactly what
  their own extract would have sent;
* a pipeline whose account extract will not come (the account DAG has no run of the day and will not
  create one) fetches its site itself at once (waiting while the account's run is queued or running is
  shown through a real scheduler: tests/e2e/test_account_stack.py);
* ``refetch`` makes a run fetch itself; one failing site does not lose the others' files;
* the config refuses account members that cannot be read in one task, naming the pipeline and key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.helpers import (
    DAGS,
    load_bag,
    logical_date_for,
    pipeline_entry,
    recent_day,
    task_states,
    write_pipelines,
    xcom,
)

pytestmark = [pytest.mark.integration, pytest.mark.airflow]

ACCOUNT_DAG = "calltouch_account_extract__agency"
SITES = (10001, 10002, 10003)


def _pipeline(tmp_path: Path, i: int, site: int, **overrides: Any) -> dict[str, Any]:
    """Pipeline ``site<i>`` of account ``agency``: site ``site``, counter ``30000 + i``, a 6-s account wait."""
    return pipeline_entry(
        tmp_path,
        f"site{i}",
        **{
            "site_id": site,
            "counter_id": 30000 + i,
            "account": "agency",
            "account_wait_minutes": 0.1,
            **overrides,
        },
    )


def _config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pipelines: list[dict[str, Any]]) -> Path:
    return write_pipelines(tmp_path, monkeypatch, *pipelines)


def _run(dag_id: str, day: Any, conf: dict[str, Any] | None = None) -> Any:
    from airflow.utils.state import DagRunState

    bag = load_bag(DAGS)
    dr = bag.dags[dag_id].test(logical_date=logical_date_for(day), run_conf=conf)
    assert dr.state == DagRunState.SUCCESS, task_states(dr)
    return dr


@pytest.fixture
def agency(sandbox):
    """The sandbox with one Calltouch token reading the three sites and one Metrika token on the counters."""
    from sandbox.config import DEFAULT_CALLTOUCH_TOKEN, DEFAULT_METRIKA_TOKEN

    sandbox.configure(
        calltouch_tokens={DEFAULT_CALLTOUCH_TOKEN: list(SITES)},
        metrika_tokens={DEFAULT_METRIKA_TOKEN: [30000 + i for i in range(4)] + [30100, 30101]},
    )
    return sandbox


def _calltouch_requests(sandbox) -> int:
    return int(sandbox.state()["requests"]["by_api"].get("calltouch", 0))


def _uploaded_ids(sandbox, counter: int) -> list[str]:
    return sorted(
        row["CallTrackerURL"]
        for up in sandbox.state()["uploads"]
        if int(up["counter_id"]) == counter
        for row in up["rows"]
    )


def test_account_dag_extracts_every_site_and_the_pipelines_upload_without_calltouch(
    agency, airflow_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox = agency
    _config(tmp_path, monkeypatch, [_pipeline(tmp_path, i, s) for i, s in enumerate(SITES)])
    bag = load_bag(DAGS)
    assert ACCOUNT_DAG in bag.dags
    extract = bag.dags["calltouch_calls_to_metrika__site0"].get_task("extract")
    assert extract.pool == "default_pool"  # not the Calltouch pool: it normally makes no request
    assert bag.dags[ACCOUNT_DAG].get_task("extract").pool == "calltouch_api"
    day = recent_day()

    dr = _run(ACCOUNT_DAG, day)
    out = xcom(dr, "extract")
    assert set(out["sites"]) == {"site0", "site1", "site2"} and not out["failed"]
    requests_after_account = _calltouch_requests(sandbox)
    assert requests_after_account == sum(s["requests"] for s in out["sites"].values())
    for i, site in enumerate(SITES):
        manifest = tmp_path / f"data/calltouch/account_extracts/account=agency/date={day}/site{i}.json"
        assert manifest.is_file()
        assert (tmp_path / f"data/calltouch/calls/site={site}/date={day}/calls.parquet").is_file()

    for i in range(len(SITES)):
        dr = _run(f"calltouch_calls_to_metrika__site{i}", day)
        summary = xcom(dr, "extract")
        assert summary["site_id"] == SITES[i] and summary["main_days"] == [day.isoformat()]
        assert summary["rows"] == out["sites"][f"site{i}"]["rows"] > 0
        assert "account_run_id" not in summary  # the extract XCom keeps its documented shape
        upload = xcom(dr, "upload")
        assert upload["uploaded"] + upload["rejected"] == summary["rows"]
        assert len(_uploaded_ids(sandbox, 30000 + i)) == upload["uploaded"]
    assert _calltouch_requests(sandbox) == requests_after_account  # the pipelines asked Calltouch nothing


def test_same_calls_as_the_sites_own_extract(
    agency, airflow_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox = agency
    """An account member uploads exactly what the same pipeline without ``account`` uploads."""
    day = recent_day()
    alone = _pipeline(tmp_path / "alone", 0, SITES[1], account=None, counter_id=30100)
    member = _pipeline(tmp_path / "member", 1, SITES[1], counter_id=30101, lookback_days=1)
    alone["lookback_days"] = 1
    _config(tmp_path, monkeypatch, [alone, member])
    _run(ACCOUNT_DAG, day)
    _run("calltouch_calls_to_metrika__site0", day)
    _run("calltouch_calls_to_metrika__site1", day)
    a, b = _uploaded_ids(sandbox, 30100), _uploaded_ids(sandbox, 30101)
    assert a and a == b


def test_without_an_account_run_a_pipeline_fetches_its_site_itself(
    agency, airflow_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox = agency
    _config(tmp_path, monkeypatch, [_pipeline(tmp_path, 0, SITES[0], account_wait_minutes=0.05)])
    day = recent_day()
    dr = _run("calltouch_calls_to_metrika__site0", day)  # the account DAG never ran this day
    summary = xcom(dr, "extract")
    assert summary["rows"] > 0 and _calltouch_requests(sandbox) >= 1
    assert len(_uploaded_ids(sandbox, 30000)) == xcom(dr, "upload")["uploaded"] > 0


def test_refetch_fetches_the_site_again(
    agency, airflow_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox = agency
    day = recent_day()
    _config(tmp_path, monkeypatch, [_pipeline(tmp_path, 0, SITES[0])])
    _run(ACCOUNT_DAG, day)
    n = _calltouch_requests(sandbox)
    dr = _run("calltouch_calls_to_metrika__site0", day, conf={"refetch": True})
    assert _calltouch_requests(sandbox) > n  # asked Calltouch although the account's files were there
    assert xcom(dr, "extract")["rows"] > 0


def test_config_refuses_account_members_that_cannot_share_one_task(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from calltouch_metrika.config import read_config

    good = _pipeline(tmp_path, 0, SITES[0])
    other_tz = _pipeline(tmp_path, 1, SITES[1], timezone="Asia/Yekaterinburg")
    other_conn = _pipeline(tmp_path, 2, SITES[2], calltouch_conn_id="calltouch_other")
    clash = _pipeline(tmp_path, 3, SITES[0], filters={"target_only": True})
    report = read_config(_config(tmp_path, monkeypatch, [good, other_tz, other_conn, clash]))
    assert [p.name for p in report.pipelines] == ["site0"]
    text = "\n".join(report.errors)
    assert "pipeline 'site1': key 'timezone': account 'agency'" in text
    assert "pipeline 'site2': key 'calltouch_conn_id'" in text
    assert "pipeline 'site3': key 'filters'" in text and "overwrite each other" in text


def test_one_failing_site_does_not_lose_the_others(
    sandbox, airflow_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The token cannot read site 10003 (sandbox default): the task fails naming it, after writing the others."""
    from airflow.utils.state import DagRunState

    from sandbox.config import DEFAULT_METRIKA_TOKEN

    sandbox.configure(metrika_tokens={DEFAULT_METRIKA_TOKEN: [30000, 30001, 30002]})
    _config(tmp_path, monkeypatch, [_pipeline(tmp_path, i, s) for i, s in enumerate(SITES)])
    day = recent_day()
    dr = load_bag(DAGS).dags[ACCOUNT_DAG].test(logical_date=logical_date_for(day))
    assert dr.state == DagRunState.FAILED
    base = tmp_path / f"data/calltouch/account_extracts/account=agency/date={day}"
    assert sorted(p.name for p in base.iterdir()) == ["site0.json", "site1.json"]
    for i in (0, 1):  # the healthy sites' pipelines upload from the account's files
        dr = _run(f"calltouch_calls_to_metrika__site{i}", day)
        assert xcom(dr, "upload")["uploaded"] > 0
