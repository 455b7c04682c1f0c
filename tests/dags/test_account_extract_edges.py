# ruff: noqa: F811  (the `agency` fixture is imported from test_account_extract)
"""Account extracts at their edges (issue 15; found by a tester trying to break them): settings changed
since the account's run, members before their start, a failed account run while a pipeline waits,
one-site fetches shared, and config checks that must not unload healthy pipelines."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest

from tests.dags.test_account_extract import (
    ACCOUNT_DAG,
    SITES,
    _calltouch_requests,
    _config,
    _pipeline,
    _run,
    agency,  # noqa: F401
)
from tests.helpers import DAGS, load_bag, logical_date_for, recent_day, task_states, xcom

pytestmark = [pytest.mark.integration, pytest.mark.airflow]


def test_settle_and_lookback_member_uses_summary(agency, airflow_db, tmp_path, monkeypatch):
    day = recent_day()
    _config(tmp_path, monkeypatch, [_pipeline(tmp_path, 0, SITES[0], settle_days=1, lookback_days=2)])
    out = xcom(_run(ACCOUNT_DAG, day), "extract")
    n = _calltouch_requests(agency)
    dr = _run("calltouch_calls_to_metrika__site0", day)
    s = xcom(dr, "extract")
    print("ACCOUNT", out, "PIPE", {k: s[k] for k in ("days", "main_days", "lookback_days")})
    assert s["main_days"] == [(day - timedelta(days=1)).isoformat()]
    assert s["days"] == [(day - timedelta(days=k)).isoformat() for k in (3, 2, 1)]
    assert _calltouch_requests(agency) == n


def test_a_summary_made_for_another_site_id_is_not_used(agency, airflow_db, tmp_path, monkeypatch):
    day = recent_day()
    _config(tmp_path, monkeypatch, [_pipeline(tmp_path, 0, SITES[0])])
    _run(ACCOUNT_DAG, day)
    # the user fixes the pipeline's site id (typo) and re-runs the day
    _config(tmp_path, monkeypatch, [_pipeline(tmp_path, 0, SITES[1])])
    dr = _run("calltouch_calls_to_metrika__site0", day)
    s = xcom(dr, "extract")
    print("configured site", SITES[1], "extract XCom site_id", s["site_id"], s["paths"])
    assert s["site_id"] == SITES[1], "pipeline uploaded the calls of the OLD site from a stale summary"


def test_a_summary_made_without_phone_hashing_is_not_used(agency, airflow_db, tmp_path, monkeypatch):
    day = recent_day()
    _config(tmp_path, monkeypatch, [_pipeline(tmp_path, 0, SITES[0])])
    _run(ACCOUNT_DAG, day)
    monkeypatch.setenv("AIRFLOW_VAR_CALLTOUCH_METRIKA_PHONE_SALT", "pepper-123456")
    _config(tmp_path, monkeypatch, [_pipeline(tmp_path, 0, SITES[0], hash_phone_numbers=True)])
    dr = _run("calltouch_calls_to_metrika__site0", day)
    import pyarrow.parquet as pq

    t = pq.read_table(xcom(dr, "extract")["path"])
    assert all(t.column("phonesHashed").to_pylist())  # fetched again, hashed: not the account's raw file
    for column in ("callerNumber", "redirectNumber"):  # the numbers hashing replaces (phoneNumber is the
        values = [v for v in t.column(column).to_pylist() if v]  # tracking number: kept)
        assert values and all(len(v) == 64 and not v.isdigit() for v in values), (column, values[:3])


def test_the_account_fetches_a_member_before_its_start_date(agency, airflow_db, tmp_path, monkeypatch):
    """Airflow backfills days before a DAG's start_date too: the account must have them ready."""
    day = recent_day()
    _config(
        tmp_path,
        monkeypatch,
        [_pipeline(tmp_path, 0, SITES[0]), _pipeline(tmp_path, 1, SITES[1], start_date=day.isoformat())],
    )
    out = xcom(_run(ACCOUNT_DAG, day - timedelta(days=3)), "extract")
    assert set(out["sites"]) == {"site0", "site1"} and not out["skipped"]


def test_a_waiting_pipeline_stops_waiting_once_the_account_run_failed(
    sandbox, airflow_db, tmp_path, monkeypatch, capfd
):
    import calltouch_metrika.operators.calltouch as extract_module

    monkeypatch.setattr(extract_module, "ACCOUNT_RECHECK_SECONDS", 3)  # checks every 3 s, not 120 s
    from airflow.models import DagRun
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState

    from sandbox.config import DEFAULT_CALLTOUCH_TOKEN, DEFAULT_METRIKA_TOKEN

    sandbox.configure(
        calltouch_tokens={DEFAULT_CALLTOUCH_TOKEN: [SITES[0]]},
        metrika_tokens={DEFAULT_METRIKA_TOKEN: [30000, 30001, 30002]},
    )
    _config(
        tmp_path,
        monkeypatch,
        [_pipeline(tmp_path, 0, SITES[0]), _pipeline(tmp_path, 2, SITES[2], account_wait_minutes=0.75)],
    )
    day = recent_day()
    adr = load_bag(DAGS).dags[ACCOUNT_DAG].test(logical_date=logical_date_for(day))
    assert adr.state == DagRunState.FAILED
    out = capfd.readouterr()
    assert DEFAULT_CALLTOUCH_TOKEN not in out.out + out.err, (
        "token leaked in the failing account run's output"
    )

    def set_state(state):
        with create_session() as s:
            s.query(DagRun).filter(DagRun.dag_id == ACCOUNT_DAG, DagRun.run_id == adr.run_id).update(
                {"state": state}, synchronize_session=False
            )

    set_state(DagRunState.RUNNING)  # the account's run is still going (e.g. task up for retry)
    threading.Timer(4, set_state, args=(DagRunState.FAILED,)).start()  # ...and fails 4 s later
    sandbox.configure(calltouch_tokens={DEFAULT_CALLTOUCH_TOKEN: list(SITES)})  # site readable again
    t0 = time.monotonic()
    dr = load_bag(DAGS).dags["calltouch_calls_to_metrika__site2"].test(logical_date=logical_date_for(day))
    elapsed = time.monotonic() - t0
    from airflow.utils.state import DagRunState as S

    assert dr.state == S.SUCCESS, task_states(dr)
    assert elapsed < 30, f"extract kept waiting {elapsed:.0f}s after the account's run had failed at 4s"


def test_two_spellings_of_one_storage_root_are_one_root(tmp_path, monkeypatch):
    from calltouch_metrika.config import read_config

    a = _pipeline(tmp_path, 0, SITES[0])
    b = _pipeline(
        tmp_path,
        1,
        SITES[0],
        filters={"target_only": True},
        counter_id=30005,
        storage_root=str(tmp_path / "data") + "/",
    )
    report = read_config(_config(tmp_path, monkeypatch, [a, b]))
    print([p.name for p in report.pipelines], report.errors)
    assert [p.name for p in report.pipelines] == ["site0"], "same directory, different filters accepted"


def test_one_odd_first_member_does_not_unload_the_majority(tmp_path, monkeypatch):
    import yaml

    from calltouch_metrika.config import read_config

    pipes = [
        _pipeline(tmp_path, 0, SITES[0], calltouch_conn_id="calltouch_new"),  # one new, odd pipeline
        _pipeline(tmp_path, 1, SITES[1]),
        _pipeline(tmp_path, 2, SITES[2]),
    ]
    for p in pipes:
        p.pop("account")
    path = tmp_path / "pipelines.yaml"
    path.write_text(yaml.safe_dump({"defaults": {"account": "agency"}, "pipelines": pipes}), encoding="utf-8")
    report = read_config(path)
    print([p.name for p in report.pipelines], report.errors)
    assert {"site1", "site2"} <= {p.name for p in report.pipelines}, "healthy pipelines taken down"


def test_switching_on_phone_hashing_uploads_no_phone_numbers(agency, airflow_db, tmp_path, monkeypatch):
    day = recent_day()
    _config(tmp_path, monkeypatch, [_pipeline(tmp_path, 0, SITES[0])])
    _run(ACCOUNT_DAG, day)
    monkeypatch.setenv("AIRFLOW_VAR_CALLTOUCH_METRIKA_PHONE_SALT", "pepper-123456")
    _config(tmp_path, monkeypatch, [_pipeline(tmp_path, 0, SITES[0], hash_phone_numbers=True)])
    _run("calltouch_calls_to_metrika__site0", day)
    rows = [r for up in agency.state()["uploads"] for r in up["rows"]]
    print("uploaded row keys", sorted(rows[0]), rows[0].get("PhoneNumber"))
    assert not any(r.get("PhoneNumber") for r in rows), "raw phone numbers sent although hash_phone_numbers"


def test_two_members_with_the_same_settings_share_one_fetch(agency, airflow_db, tmp_path, monkeypatch):
    day = recent_day()
    _config(
        tmp_path,
        monkeypatch,
        [_pipeline(tmp_path, 0, SITES[0]), _pipeline(tmp_path, 1, SITES[0], counter_id=30001)],
    )
    out = xcom(_run(ACCOUNT_DAG, day), "extract")
    print(out, "calltouch requests", _calltouch_requests(agency))
    assert _calltouch_requests(agency) == 1, "one site's day fetched once per member"


def test_members_with_different_storage_roots(agency, airflow_db, tmp_path, monkeypatch):
    day = recent_day()
    _config(
        tmp_path, monkeypatch, [_pipeline(tmp_path, 0, SITES[0]), _pipeline(tmp_path / "other", 1, SITES[1])]
    )
    _run(ACCOUNT_DAG, day)
    n = _calltouch_requests(agency)
    for i in (0, 1):
        dr = _run(f"calltouch_calls_to_metrika__site{i}", day)
        assert xcom(dr, "upload")["uploaded"] > 0
    assert _calltouch_requests(agency) == n


def test_hash_with_salt_same_as_own_extract(agency, airflow_db, tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    day = recent_day()
    monkeypatch.setenv("AIRFLOW_VAR_CALLTOUCH_METRIKA_PHONE_SALT", "pepper-123456")
    _config(
        tmp_path,
        monkeypatch,
        [
            _pipeline(tmp_path, 0, SITES[0], hash_phone_numbers=True),
            _pipeline(
                tmp_path / "alone", 1, SITES[0], hash_phone_numbers=True, account=None, counter_id=30001
            ),
        ],
    )
    _run(ACCOUNT_DAG, day)
    a = xcom(_run("calltouch_calls_to_metrika__site0", day), "extract")
    b = xcom(_run("calltouch_calls_to_metrika__site1", day), "extract")
    ta, tb = pq.read_table(a["path"]), pq.read_table(b["path"])
    assert ta.column("phoneNumber").to_pylist() == tb.column("phoneNumber").to_pylist()
    assert all(ta.column("phonesHashed").to_pylist())
    rows = [r for up in agency.state()["uploads"] for r in up["rows"]]
    assert not any(r.get("PhoneNumber") for r in rows)
