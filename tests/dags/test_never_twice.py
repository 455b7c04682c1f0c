"""Issue 12 §9: every call reaches Metrika exactly once, shown against the sandbox through real Airflow.

* two ``airflow dags test`` processes for the same day at once, Metrika answering slowly;
* two pipelines on one site and counter with overlapping filters, in both orders;
* a day uploaded, then calls added to it in the sandbox: the next day's lookback tops it up in one
  extra upload, also when that upload's answer is lost;
* ten re-runs of a day upload nothing new; ``force_reupload`` is recorded as forced;
* the counter's linkage threshold (sandbox ``calls_accounting``) and its fallback.

"Each call once" is checked on what the sandbox received: the ``callId`` in each uploaded row's
``CallTrackerURL``.
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from collections import Counter
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import (
    COUNTER_ID,
    REPO,
    SITE_ID,
    logical_date_for,
    pipeline_entry,
    recent_day,
    run_dag,
    task_states,
    write_pipelines,
    xcom,
)

pytestmark = [pytest.mark.integration, pytest.mark.airflow]

_CALL_ID = re.compile(r"callId=(\d+)")


def _pipeline(tmp_path: Path, name: str, **overrides: Any) -> dict[str, Any]:
    return pipeline_entry(tmp_path, name, **overrides)


def _config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *pipelines: dict[str, Any]) -> Path:
    return write_pipelines(tmp_path, monkeypatch, *pipelines)


def _sent_ids(sandbox) -> Counter[int]:
    """How many times each callId reached the sandbox's Metrika, over every upload."""
    return Counter(
        int(_CALL_ID.search(row["CallTrackerURL"]).group(1))
        for up in sandbox.state()["uploads"]
        for row in up["rows"]
    )


def _assert_each_once(sandbox) -> Counter[int]:
    sent = _sent_ids(sandbox)
    twice = {c: n for c, n in sent.items() if n > 1}
    assert not twice, f"calls sent more than once: {twice}"
    assert sent, "nothing was uploaded"
    return sent


def _ledger_ids(root: Path) -> set[int]:
    from calltouch_metrika.ledger import CallLedger

    return CallLedger(str(root), COUNTER_ID).held_call_ids(SITE_ID)


def _ok(dr: Any) -> None:
    from airflow.utils.state import DagRunState

    assert dr.state == DagRunState.SUCCESS, task_states(dr)


# -- 1. two processes, same day, slow Metrika ------------------------------------------------------
def test_two_dags_test_processes_for_the_same_day_send_each_call_once(
    sandbox, airflow_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(tmp_path, monkeypatch, _pipeline(tmp_path, "e2e"))
    day = recent_day()
    sandbox.faults(latency=1.0, scope="metrika")  # every Metrika answer takes a second
    procs = []
    for i in range(2):
        home = tmp_path / f"home{i}"  # own metadata DB each: SQLite takes one writer at a time
        home.mkdir()
        # SQLite's online backup: a consistent copy that never writes to the session's database
        src, dst = sqlite3.connect(airflow_db / "airflow.db"), sqlite3.connect(home / "airflow.db")
        try:
            src.backup(dst)
        finally:
            src.close()
            dst.close()
        env = dict(
            os.environ,
            AIRFLOW_HOME=str(home),
            AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
            CALLTOUCH_METRIKA_CONFIG=str(config),
            PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "plugins")]),
        )
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "airflow",
                    "dags",
                    "test",
                    "calltouch_calls_to_metrika__e2e",
                    logical_date_for(day).isoformat(),
                ],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outs = []
    for p in procs:
        out, _ = p.communicate(timeout=600)
        outs.append(out)
        assert p.returncode == 0, out[-4000:]
    sent = _assert_each_once(sandbox)
    uploads = sandbox.state()["uploads"]
    assert len(uploads) == 1, [u["comment"] for u in uploads]
    assert set(sent) == _ledger_ids(tmp_path / "data")
    logs = "\n".join(outs)
    assert "lease generation 1" in logs and "lease generation 2" in logs  # one after the other
    assert "uploads this run: none" in logs  # the second one found everything in the ledger


# -- 2. two pipelines on one site and counter ----------------------------------------------------
@pytest.mark.parametrize("first", ["all_calls", "targets"])
def test_overlapping_pipelines_on_one_counter_send_each_call_once(
    sandbox, airflow_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, first: str
) -> None:
    a = _pipeline(tmp_path, "all_calls")
    b = _pipeline(tmp_path, "targets", filters={"with_call_tags": True, "target_only": True})
    from calltouch_metrika.config import read_config

    report = read_config(_config(tmp_path, monkeypatch, a, b))
    assert any("may select the same calls" in w for w in report.warnings)
    day = recent_day()
    order = ["all_calls", "targets"] if first == "all_calls" else ["targets", "all_calls"]
    outs = {}
    for name in order:
        dr = run_dag(f"calltouch_calls_to_metrika__{name}", day)
        _ok(dr)
        outs[name] = xcom(dr, "upload")
    sent = _assert_each_once(sandbox)
    assert set(sent) == _ledger_ids(tmp_path / "data")
    if first == "all_calls":  # every target call was already sent by the wider pipeline
        assert outs["targets"]["uploaded"] == 0 and outs["targets"]["already_sent"] > 0
        assert len(sandbox.state()["uploads"]) == 1
    else:  # the wider pipeline sends only the calls the narrow one did not
        assert outs["all_calls"]["already_sent"] == outs["targets"]["uploaded"] > 0
        assert len(sandbox.state()["uploads"]) == 2


# -- 3./4. late calls: the lookback tops a day up --------------------------------------------------
@pytest.mark.parametrize("lose", [False, True], ids=["answered", "lost_response"])
def test_calls_added_to_an_uploaded_day_are_sent_by_the_next_days_lookback(
    sandbox, airflow_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lose: bool
) -> None:
    _config(tmp_path, monkeypatch, _pipeline(tmp_path, "e2e", lookback_days=1))
    dag_id = "calltouch_calls_to_metrika__e2e"
    day = recent_day() - timedelta(days=1)
    _ok(run_dag(dag_id, day))
    first = _sent_ids(sandbox)
    before = [u["comment"] for u in sandbox.state()["uploads"]]  # the day (and its own lookback day)
    assert f"calltouch-metrika e2e site {SITE_ID} {day.isoformat()} part 1" in before
    # 30 calls appear on that day after it was uploaded
    sandbox.configure(volume_overrides={f"{SITE_ID}:{day.isoformat()}": 180})
    if lose:
        sandbox.faults(lose_upload_response=1, scope="metrika")  # the top-up is the run's first upload
    dr = run_dag(dag_id, day + timedelta(days=1))
    _ok(dr)
    sent = _assert_each_once(sandbox)
    out = xcom(dr, "upload")
    uploads = sandbox.state()["uploads"]
    comments = sorted(u["comment"] for u in uploads)
    assert comments == sorted(
        [
            *before,
            f"calltouch-metrika e2e site {SITE_ID} {day.isoformat()} part 2",  # the one extra upload
            f"calltouch-metrika e2e site {SITE_ID} {(day + timedelta(days=1)).isoformat()} part 1",
        ]
    )
    top_up = next(u for u in uploads if u["comment"].endswith(f"{day.isoformat()} part 2"))
    top_ids = {int(_CALL_ID.search(r["CallTrackerURL"]).group(1)) for r in top_up["rows"]}
    base = (day.toordinal() * 100_000) * 1000 + SITE_ID % 1000  # the sandbox's callIds of that day
    added = {base + i * 1000 for i in range(150, 180)}
    assert not top_ids & set(first)  # nothing of the first upload again
    lookback_day = next(d for d in out["days"] if d["day"] == day.isoformat())
    first_of_day = {c for c in first if base <= c < base + 180_000}
    assert (lookback_day["extracted"], lookback_day["uploaded"]) == (180, len(top_ids))
    # (the sandbox re-draws a day's contents when its volume changes: a call sent before may now be a
    # reject, a call rejected before may now carry a yaClientId -- a late call too)
    assert 0 < lookback_day["already_sent"] <= len(first_of_day)
    # the added calls that can be uploaded are all in the top-up (the rest are rejects with a reason)
    assert added & top_ids and (added - top_ids) <= _rejected_ids(tmp_path, day)
    extract = xcom(dr, "extract")
    assert extract["lookback_days"] == [day.isoformat()] and extract["lookback_requests"] == 1
    assert set(sent) == _ledger_ids(tmp_path / "data")
    if lose:
        from calltouch_metrika.ledger import CallLedger, PartKey

        st = CallLedger(str(tmp_path / "data"), COUNTER_ID).parts()[PartKey("e2e", day, 2)]
        assert st.state == "sent" and st.upload_id == top_up["id"]


def _rejected_ids(tmp_path: Path, day: date) -> set[int]:
    import pyarrow.parquet as pq

    from calltouch_metrika import storage

    path = storage.rejects_path(str(tmp_path / "data"), COUNTER_ID, day, "e2e")
    return {int(c) for c in pq.read_table(path.path).column("callId").to_pylist() if c is not None}


# -- 5. re-runs, force ---------------------------------------------------------------------------
def test_ten_reruns_upload_nothing_new_and_force_is_recorded(
    sandbox, airflow_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from calltouch_metrika.operators.calltouch import CalltouchExtractOperator
    from calltouch_metrika.operators.metrika import MetrikaUploadCallsOperator

    _config(tmp_path, monkeypatch, _pipeline(tmp_path, "e2e"))
    day = recent_day()
    _ok(run_dag("calltouch_calls_to_metrika__e2e", day))
    (upload,) = sandbox.state()["uploads"]
    root = str(tmp_path / "data")
    extract = CalltouchExtractOperator(
        task_id="extract", site_id=SITE_ID, storage_root=root, date_from=day.isoformat()
    ).execute({})

    def op(**kw: Any) -> MetrikaUploadCallsOperator:
        return MetrikaUploadCallsOperator(
            task_id="upload", pipeline="e2e", extract=extract, counter_id=COUNTER_ID, storage_root=root, **kw
        )

    for i in range(9):
        out = op(compact_after_files=1 if i == 4 else 400).execute({})  # the fifth also compacts
        assert (out["uploaded"], out["upload_id"], out["reused"]) == (0, upload["id"], True)
    from calltouch_metrika.ledger import CallLedger

    assert [p.name[:10] for p in CallLedger(root, COUNTER_ID).files()] == ["compacted-"]
    _ok(run_dag("calltouch_calls_to_metrika__e2e", day))  # the tenth, through Airflow
    assert len(sandbox.state()["uploads"]) == 1
    csv_before = sorted(p.name for p in (tmp_path / "data/metrika/uploads").rglob("*.csv"))
    # a dry run says "would upload" nothing, writes apart, touches no audit file
    dry = op(dry_run=True).execute({"run_id": "dry1"})
    assert dry["would_upload"] == 0 and dry["upload_id"] is None
    # force: the day again, recorded as forced, with the warning naming the deduplication question
    capsys.readouterr()
    forced = op(force_reupload=True).execute({})
    assert forced["forced"] is True and forced["uploaded"] == upload["source_quantity"]
    logged = capsys.readouterr().out
    assert "does not document whether it deduplicates" in logged and "§3.4" in logged
    assert len(sandbox.state()["uploads"]) == 2
    from calltouch_metrika.ledger import CallLedger, PartKey

    parts = CallLedger(root, COUNTER_ID).parts()
    assert parts[PartKey("e2e", day, 2)].forced and not parts[PartKey("e2e", day, 1)].forced
    csv_after = sorted(p.name for p in (tmp_path / "data/metrika/uploads").rglob("*.csv"))
    assert csv_after == sorted([*csv_before, "e2e.part0002.csv"])  # part 1's CSV untouched


# -- 6. the linkage threshold --------------------------------------------------------------------
def test_calls_before_the_counters_threshold_are_rejected(
    sandbox, airflow_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    day = recent_day()
    # calls accounting switched on 2.5 days ago: the day before yesterday is partly before it
    sandbox.reset(calls_accounting={str(COUNTER_ID): {"enabled_days_ago": 2.5}})
    _config(tmp_path, monkeypatch, _pipeline(tmp_path, "e2e"))
    dr = run_dag("calltouch_calls_to_metrika__e2e", day)
    _ok(dr)
    out = xcom(dr, "upload")
    assert out["join_threshold_source"] == "api"
    assert out["rejects_by_reason"].get("before_join_threshold", 0) > 0
    assert out["extracted"] == out["uploaded"] + out["already_sent"] + out["rejected"]
    from datetime import datetime

    threshold = datetime.fromisoformat(out["join_threshold"]).timestamp()
    for up in sandbox.state()["uploads"]:
        assert all(int(r["DateTime"]) >= threshold for r in up["rows"])


def test_switched_off_accounting_falls_back_to_21_days_and_says_so(
    sandbox, airflow_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from calltouch_metrika.hooks.metrika import MetrikaHook

    sandbox.reset(calls_accounting={str(COUNTER_ID): {"enabled": False}})
    # switched off, Metrika links nothing (LINKAGE_FAILURE); static calls still reach the call reports
    _config(tmp_path, monkeypatch, _pipeline(tmp_path, "e2e", on_linkage_failure="warn"))
    dr = run_dag("calltouch_calls_to_metrika__e2e", recent_day())
    _ok(dr)
    out = xcom(dr, "upload")
    assert out["join_threshold_source"] == "fallback"
    assert "falling back to the 21-day rule" in capsys.readouterr().out
    ok, message = MetrikaHook(_counter_conn(monkeypatch)).test_connection()
    assert ok and "21-day rule" in message, message


def _counter_conn(monkeypatch: pytest.MonkeyPatch) -> str:
    """A copy of the default Metrika connection with extra ``counter_id`` (what the Test reads)."""
    import json

    conn = json.loads(os.environ["AIRFLOW_CONN_METRIKA_DEFAULT"])
    conn["extra"] = {**conn.get("extra", {}), "counter_id": str(COUNTER_ID)}
    monkeypatch.setenv("AIRFLOW_CONN_METRIKA_COUNTER", json.dumps(conn))
    return "metrika_counter"


def test_connection_test_reports_the_threshold(sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    from calltouch_metrika.hooks.metrika import MetrikaHook

    sandbox.reset(calls_accounting={str(COUNTER_ID): {"enabled_days_ago": 3}})
    ok, message = MetrikaHook(_counter_conn(monkeypatch)).test_connection()
    assert ok and "calls link from" in message, message


# -- 7. settle delay, upgrade --------------------------------------------------------------------
def test_settle_days_send_an_earlier_day(
    sandbox, airflow_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _config(tmp_path, monkeypatch, _pipeline(tmp_path, "e2e", settle_days=2))
    day = recent_day()
    dr = run_dag("calltouch_calls_to_metrika__e2e", day)
    _ok(dr)
    settled = (day - timedelta(days=2)).isoformat()
    assert xcom(dr, "extract")["main_days"] == [settled]
    (upload,) = sandbox.state()["uploads"]
    assert upload["comment"] == f"calltouch-metrika e2e site {SITE_ID} {settled} part 1"


def test_upgrade_imports_a_pre_ledger_upload_and_sends_nothing_again(
    sandbox, airflow_db: Path, tmp_path: Path
) -> None:
    """A day uploaded by the one-upload-per-day version (old comment, CSV at metrika/calls_csv/...)."""
    from calltouch_metrika import storage
    from calltouch_metrika.hooks.metrika import MetrikaHook
    from calltouch_metrika.ledger import CallLedger, PartKey, legacy_comment
    from calltouch_metrika.operators.calltouch import CalltouchExtractOperator
    from calltouch_metrika.operators.metrika import MetrikaUploadCallsOperator

    day = recent_day()
    root = str(tmp_path / "data")
    extract = CalltouchExtractOperator(
        task_id="extract", site_id=SITE_ID, storage_root=root, date_from=day.isoformat()
    ).execute({})

    def op(**kw: Any) -> MetrikaUploadCallsOperator:
        return MetrikaUploadCallsOperator(
            task_id="upload", pipeline="e2e", extract=extract, counter_id=COUNTER_ID, storage_root=root, **kw
        )

    # what the old version did: the day's CSV at its old path, uploaded under the old comment
    dry = op(dry_run=True).execute({"run_id": "old"})
    data = Path(dry["csv_path"].removeprefix("file://")).read_bytes()
    storage.atomic_write_bytes(storage.metrika_csv_path(root, COUNTER_ID, day, "e2e"), data)
    old = MetrikaHook().upload_calls(COUNTER_ID, data, comment=legacy_comment("e2e", SITE_ID, day))
    out = op().execute({})
    assert (out["uploaded"], out["already_sent"]) == (0, dry["would_upload"])
    assert len(sandbox.state()["uploads"]) == 1
    st = CallLedger(root, COUNTER_ID).parts()[PartKey("e2e", day, 0)]
    assert (st.state, st.upload_id, len(st.call_ids)) == ("sent", old["id"], dry["would_upload"])
    assert out["upload_id"] == old["id"] and out["reused"] is True
