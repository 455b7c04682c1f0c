"""exactly_once.py against the sandbox: send, lost responses, unknown outcomes, reconcile, upgrade.

Real HTTP to the sandbox through the real MetrikaHook; "Metrika cannot be read" is a real connection
to a closed loopback port.
"""

from __future__ import annotations

import json
import socket
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from calltouch_metrika import storage
from calltouch_metrika.exactly_once import (
    CounterSender,
    NotStoredError,
    OutcomeNotLearntError,
    parse_join_threshold,
    read_join_threshold,
    run_days,
)
from calltouch_metrika.hooks.metrika import MetrikaHook
from calltouch_metrika.lease import CounterLease
from calltouch_metrika.ledger import CallLedger, PartKey, legacy_comment

COUNTER = 20001
SITE = 10001
DAY = date(2026, 11, 23)


def _csv(call_ids: list[int]) -> bytes:
    ts = int((datetime.now(UTC) - timedelta(days=1)).timestamp())
    rows = [f"{1000 + c},{ts},https://my.calltouch.ru/accounts/{SITE}/calls-log?callId={c}" for c in call_ids]
    return ("ClientId,DateTime,CallTrackerURL\n" + "\n".join(rows) + "\n").encode()


def _uploader(hook: MetrikaHook, call_ids: list[int]):
    data = _csv(call_ids)
    return lambda comment: hook.upload_calls(COUNTER, data, comment=comment)


@pytest.fixture
def dead_hook(monkeypatch: pytest.MonkeyPatch) -> MetrikaHook:
    """A Metrika connection to a closed loopback port: every request fails for real."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv(
        "AIRFLOW_CONN_METRIKA_DEAD",
        json.dumps({"conn_type": "yandex_metrika", "host": f"http://127.0.0.1:{port}", "password": "t"}),
    )
    return MetrikaHook("metrika_dead", max_attempts=1)


def _sender(tmp_path: Path, hook: MetrikaHook, **kw) -> CounterSender:
    return CounterSender(
        hook=hook,
        ledger=CallLedger(str(tmp_path), COUNTER),
        lease=None,
        site_id=SITE,
        pipeline="demo",
        lookup_delay=0.01,
        **kw,
    )


def _uploads(sandbox) -> list[dict]:
    return sandbox.state()["uploads"]


def test_run_days_and_threshold_parsing() -> None:
    assert run_days(DAY) == (DAY, [])
    assert run_days(DAY, settle_days=1, lookback_days=2) == (
        date(2026, 11, 22),
        [date(2026, 11, 20), date(2026, 11, 21)],
    )
    assert parse_join_threshold({"date": "2026-11-09T05:00:00Z"}) == datetime(2026, 11, 9, 5, tzinfo=UTC)
    assert parse_join_threshold({"date": "2026-11-09"}) == datetime(2026, 11, 9, tzinfo=UTC)
    with pytest.raises(ValueError, match="without a 'date'"):
        parse_join_threshold({"threshold": 1})


def test_threshold_falls_back_to_21_days_when_metrika_does_not_answer(dead_hook: MetrikaHook) -> None:
    now = datetime(2026, 11, 30, 12, tzinfo=UTC)
    th = read_join_threshold(dead_hook, COUNTER, now=now)
    assert th.source == "fallback" and th.at == now - timedelta(days=21)
    assert "falling back to the 21-day rule" in th.note


@pytest.mark.integration
def test_send_records_sending_then_sent(sandbox, tmp_path: Path) -> None:
    hook = MetrikaHook()
    sender = _sender(tmp_path, hook)
    sender.reconcile()
    key, comment = sender.next_key(DAY)
    assert comment == f"calltouch-metrika demo site {SITE} 2026-11-23 part 1"
    with CounterLease(str(tmp_path), COUNTER) as lease:
        sender.lease = lease
        res = sender.send(key, comment, [1, 2, 3], _uploader(hook, [1, 2, 3]))
    assert res.source == "upload" and res.calls == 3
    [up] = _uploads(sandbox)
    assert up["comment"] == comment and up["id"] == res.upload_id and up["source_quantity"] == 3
    led = CallLedger(str(tmp_path), COUNTER)
    assert led.parts()[key].state == "sent" and led.held_call_ids(SITE) == {1, 2, 3}
    assert led.next_part("demo", DAY) == 2


@pytest.mark.integration
def test_lost_response_is_resolved_by_the_comment(sandbox, tmp_path: Path) -> None:
    hook = MetrikaHook()
    sender = _sender(tmp_path, hook)
    key, comment = sender.next_key(DAY)
    sandbox.faults(lose_upload_response=1, scope="metrika")
    res = sender.send(key, comment, [1, 2], _uploader(hook, [1, 2]))
    assert res.source == "lookup"
    assert len(_uploads(sandbox)) == 1
    st = CallLedger(str(tmp_path), COUNTER).parts()[key]
    assert (st.state, st.upload_id) == ("sent", res.upload_id)


@pytest.mark.integration
def test_unstored_upload_is_marked_failed_and_its_calls_are_free_again(sandbox, tmp_path: Path) -> None:
    hook = MetrikaHook()
    sender = _sender(tmp_path, hook)
    key, comment = sender.next_key(DAY)
    sandbox.faults(drop_connection=1, scope="metrika")
    with pytest.raises(NotStoredError, match=r"Metrika did not store it\. Retrying this task is safe"):
        sender.send(key, comment, [1, 2], _uploader(hook, [1, 2]))
    assert _uploads(sandbox) == []
    led = CallLedger(str(tmp_path), COUNTER)
    assert led.parts()[key].state == "failed" and led.held_call_ids(SITE) == set()
    assert led.next_part("demo", DAY) == 2  # the retry sends under a new comment


@pytest.mark.integration
def test_failed_lookups_say_could_not_learn_and_the_next_run_completes_the_ledger(
    sandbox, tmp_path: Path, dead_hook: MetrikaHook
) -> None:
    good = MetrikaHook()
    sender = _sender(tmp_path, dead_hook, lookup_attempts=2)  # lookups go to a dead port
    key, comment = sender.next_key(DAY)
    sandbox.faults(lose_upload_response=1, scope="metrika")
    with pytest.raises(OutcomeNotLearntError, match="could not learn the outcome") as err:
        sender.send(key, comment, [5, 6], _uploader(good, [5, 6]))
    assert "did not store" not in str(err.value)
    led = CallLedger(str(tmp_path), COUNTER)
    assert [p.key for p in led.pending()] == [key] and led.held_call_ids(SITE) == {5, 6}
    # while Metrika cannot be read, the next run sends nothing
    with pytest.raises(OutcomeNotLearntError, match=comment):
        _sender(tmp_path, dead_hook).reconcile()
    # once it can, the part is completed from Metrika's list
    _sender(tmp_path, good).reconcile()
    st = CallLedger(str(tmp_path), COUNTER).parts()[key]
    assert st.state == "sent" and st.upload_id == _uploads(sandbox)[0]["id"]
    assert len(_uploads(sandbox)) == 1


@pytest.mark.integration
def test_reconcile_marks_an_unstored_sending_part_failed_and_confirms_finished_ones(
    sandbox, tmp_path: Path
) -> None:
    sandbox.configure(status_step_seconds=0.05)
    hook = MetrikaHook()
    sender = _sender(tmp_path, hook)
    k1, c1 = sender.next_key(DAY)
    sender.send(k1, c1, [1], _uploader(hook, [1]))
    # a crash right after recording 'sending' (the request never left)
    k2 = PartKey("demo", DAY, 2)
    sender.ledger.record(k2, "sending", site_id=SITE, call_ids=[2], comment="never sent")
    time.sleep(0.5)
    sender.reconcile()
    parts = CallLedger(str(tmp_path), COUNTER).parts()
    assert parts[k2].state == "failed"
    assert parts[k1].state == "confirmed" and parts[k1].status in ("PROCESSED", "LINKAGE_FAILURE")


@pytest.mark.integration
def test_upgrade_imports_a_pre_ledger_upload_from_its_stored_csv(sandbox, tmp_path: Path) -> None:
    hook = MetrikaHook()
    legacy = legacy_comment("demo", SITE, DAY)
    old = hook.upload_calls(COUNTER, _csv([7, 8, 9]), comment=legacy)
    csv_path = storage.metrika_csv_path(str(tmp_path), COUNTER, DAY, "demo")
    storage.atomic_write_bytes(csv_path, _csv([7, 8, 9]))
    sender = _sender(tmp_path, hook)
    uploadings = sender.reconcile()
    assert sender.import_legacy(DAY, uploadings, csv_path=csv_path) == 3
    assert sender.import_legacy(DAY, uploadings, csv_path=csv_path) == 0  # once
    led = CallLedger(str(tmp_path), COUNTER)
    st = led.parts()[PartKey("demo", DAY, 0)]
    assert (st.state, st.upload_id, st.call_ids) == ("sent", old["id"], (7, 8, 9))
    assert led.held_call_ids(SITE) == {7, 8, 9} and led.next_part("demo", DAY) == 1
    # no stored CSV: the day's uploadable calls are taken as sent by the old upload
    other = date(2026, 11, 24)
    hook.upload_calls(COUNTER, _csv([1]), comment=legacy_comment("demo", SITE, other))
    missing = storage.metrika_csv_path(str(tmp_path), COUNTER, other, "demo")
    assert sender.import_legacy(other, sender.reconcile(), csv_path=missing, fallback_ids=[1, 2]) == 2
