"""MetrikaHook against the sandbox over loopback: upload, status, list, faults, errors, test button."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import pytest

from calltouch_metrika.exceptions import (
    AuthenticationError,
    NotFoundError,
    OutcomeUnknownError,
    QuotaExceededError,
    ServerError,
    ValidationError,
)
from calltouch_metrika.hooks.metrika import MetrikaHook
from tests.hooks.conftest import CSV_HEADER, DAY, api_count, calls_csv, status_count

pytestmark = pytest.mark.integration

COUNTER = 20001


def known_calls_csv(calltouch: Any, rows: int = 5) -> bytes:
    """A CSV of real sandbox calls (their yaClientIds are known to the Metrika side)."""
    calls = [c for c in calltouch().get_calls(DAY, DAY) if c.get("yaClientId")][:rows]
    lines = [CSV_HEADER] + [
        f"{c['yaClientId']},{c['timestamp']},,{c['duration']},{0 if c['successful'] else 1}\n" for c in calls
    ]
    return "".join(lines).encode()


# --------------------------------------------------------------------------------------------- upload


def test_upload_bytes_returns_uploading_record(sandbox: Any, metrika: Any) -> None:
    record = metrika().upload_calls(COUNTER, calls_csv(3), comment="run-1", new_goal_name="Звонок")
    assert isinstance(record["id"], int)
    assert record["source_quantity"] == 3
    state = sandbox.state()
    assert len(state["uploads"]) == 1
    upload = state["uploads"][0]
    assert upload["counter_id"] == COUNTER
    assert upload["comment"] == "run-1"
    assert upload["new_goal_name"] == "Звонок"
    assert upload["client_id_type"] == "CLIENT_ID"
    assert len(upload["rows"]) == 3


def test_upload_path_and_file_object(sandbox: Any, metrika: Any, tmp_path: Path) -> None:
    path = tmp_path / "calls.csv"
    path.write_bytes(calls_csv(4))
    hook = metrika()
    assert hook.upload_calls(COUNTER, path)["source_quantity"] == 4
    assert hook.upload_calls(COUNTER, str(path))["source_quantity"] == 4
    with path.open("rb") as fh:
        assert hook.upload_calls(COUNTER, fh)["source_quantity"] == 4
    assert hook.upload_calls(COUNTER, io.BytesIO(calls_csv(2)))["source_quantity"] == 2
    assert hook.upload_calls(COUNTER, calls_csv(3).decode())["source_quantity"] == 3  # CSV text
    assert len(sandbox.state()["uploads"]) == 5
    with pytest.raises(FileNotFoundError):
        hook.upload_calls(COUNTER, tmp_path / "missing.csv")


class _RecordingFile(io.FileIO):
    """A real file that records the size of every read (to prove the upload streams it)."""

    reads: list[int]

    def read(self, size: int = -1) -> bytes:
        chunk = super().read(size)
        self.reads.append(len(chunk))
        return chunk


def test_upload_streams_the_file_in_chunks_and_rewinds_it_for_a_retry(
    sandbox: Any, metrika: Any, tmp_path: Path
) -> None:
    """requests_toolbelt's MultipartEncoder reads the file while sending (bounded memory), never whole."""
    rows = 40_000  # ~2 MB of CSV
    path = tmp_path / "big.csv"
    path.write_bytes(calls_csv(rows))
    sandbox.faults(burst_429=1, scope="metrika")  # the first attempt is refused: the file is sent twice
    with _RecordingFile(path, "rb") as fh:
        fh.reads = []
        record = metrika().upload_calls(COUNTER, fh, comment="streamed")
        assert record["source_quantity"] == rows
        assert sum(fh.reads) >= 2 * path.stat().st_size - 64 * 1024  # read once per attempt
        assert max(fh.reads) <= 64 * 1024  # in chunks, never the whole file
    (upload,) = sandbox.state()["uploads"]
    assert len(upload["rows"]) == rows


def test_upload_status_progresses_to_processed(sandbox: Any, metrika: Any, calltouch: Any) -> None:
    sandbox.reset(status_step_seconds=0.05)
    hook = metrika()
    record = hook.upload_calls(COUNTER, known_calls_csv(calltouch), comment="progress")
    seen = set()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        status = hook.get_calls_uploading(COUNTER, record["id"])["status"]
        seen.add(status)
        if status in ("PROCESSED", "LINKAGE_FAILURE"):
            break
        time.sleep(0.05)
    assert status == "PROCESSED"


def test_invalid_csv_is_validation_error(sandbox: Any, metrika: Any) -> None:
    bad = (CSV_HEADER + "123,notatime,+79990000000,1,0\n").encode()
    with pytest.raises(ValidationError) as err:
        metrika().upload_calls(COUNTER, bad)
    assert err.value.violations
    assert "DateTime" in str(err.value)
    assert sandbox.state()["uploads"] == []


def test_upload_argument_checks(sandbox: Any, metrika: Any) -> None:
    hook = metrika()
    with pytest.raises(ValueError, match="client_id_type"):
        hook.upload_calls(COUNTER, calls_csv(), client_id_type="EMAIL")
    with pytest.raises(ValueError, match="255"):
        hook.upload_calls(COUNTER, calls_csv(), comment="x" * 256)
    with pytest.raises(TypeError, match="csv"):
        hook.upload_calls(COUNTER, 12345)  # type: ignore[arg-type]
    assert api_count(sandbox.state(), "metrika") == 0


def test_lost_upload_response_is_outcome_unknown_and_not_resent(sandbox: Any, metrika: Any) -> None:
    sandbox.faults(lose_upload_response=1)
    hook = metrika()
    with pytest.raises(OutcomeUnknownError, match="look the result up"):
        hook.upload_calls(COUNTER, calls_csv(), comment="lost-1")
    state = sandbox.state()
    assert len(state["uploads"]) == 1  # stored once, never sent a second time
    found = hook.find_calls_uploading(COUNTER, comment="lost-1")
    assert found is not None and found["id"] == state["uploads"][0]["id"]


def test_upload_timeout_is_outcome_unknown(sandbox: Any, metrika: Any) -> None:
    sandbox.faults(latency=1.5, scope="metrika")
    with pytest.raises(OutcomeUnknownError):
        metrika(timeout=0.5).upload_calls(COUNTER, calls_csv())
    assert api_count(sandbox.state(), "metrika") == 1


def test_upload_is_resent_after_429_and_503(sandbox: Any, metrika: Any) -> None:
    sandbox.faults(burst_429=1, scope="metrika")
    metrika().upload_calls(COUNTER, calls_csv(), comment="after-429")
    sandbox.faults(fail_5xx=1, scope="metrika")
    metrika().upload_calls(COUNTER, calls_csv(), comment="after-503")
    state = sandbox.state()
    assert [u["comment"] for u in state["uploads"]] == ["after-429", "after-503"]
    assert status_count(state, "429") == 1 and status_count(state, "503") == 1


def test_upload_dropped_connection_is_outcome_unknown(sandbox: Any, metrika: Any) -> None:
    sandbox.faults(drop_connection=1, scope="metrika")
    with pytest.raises(OutcomeUnknownError):
        metrika().upload_calls(COUNTER, calls_csv())
    assert api_count(sandbox.state(), "metrika") == 1


# ------------------------------------------------------------------------------------- status / list


def test_list_follows_limit_offset_and_find_by_comment(sandbox: Any, metrika: Any) -> None:
    hook = metrika(list_page_size=2)
    ids = [hook.upload_calls(COUNTER, calls_csv(1), comment=f"c{i % 2}")["id"] for i in range(5)]
    listed = hook.list_calls_uploadings(COUNTER)
    assert sorted(u["id"] for u in listed) == sorted(ids)
    newest_c0 = hook.find_calls_uploading(COUNTER, comment="c0")
    assert newest_c0 is not None and newest_c0["id"] == ids[4]
    assert hook.find_calls_uploading(COUNTER, comment="nope") is None
    assert hook.list_calls_uploadings(20002) == []


def test_unknown_upload_is_not_found(sandbox: Any, metrika: Any) -> None:
    with pytest.raises(NotFoundError, match="999"):
        metrika().get_calls_uploading(COUNTER, 999)


def test_get_is_retried_through_429_and_5xx(sandbox: Any, metrika: Any) -> None:
    hook = metrika()
    record = hook.upload_calls(COUNTER, calls_csv())
    sandbox.faults(burst_429=2, fail_5xx=0, scope="metrika")
    assert hook.get_calls_uploading(COUNTER, record["id"])["id"] == record["id"]
    sandbox.faults(fail_5xx=2, scope="metrika")
    assert hook.get_calls_uploading(COUNTER, record["id"])["id"] == record["id"]
    sandbox.faults(fail_5xx=9, scope="metrika")
    with pytest.raises(ServerError):
        metrika(max_attempts=2).get_calls_uploading(COUNTER, record["id"])
    sandbox.faults(burst_429=9, scope="metrika")
    with pytest.raises(QuotaExceededError, match="quota"):
        metrika(max_attempts=2).get_calls_uploading(COUNTER, record["id"])


# ---------------------------------------------------------------------------------------------- auth


def test_bad_token_and_foreign_counter(sandbox: Any, metrika: Any, add_connection: Any) -> None:
    conn = add_connection("ym_bad", conn_type="yandexmetrika", host=sandbox.url, password="bad-oauth-token-1")
    with pytest.raises(AuthenticationError) as err:
        metrika(conn).upload_calls(COUNTER, calls_csv())
    assert str(COUNTER) in str(err.value) and "bad-oauth-token-1" not in str(err.value)
    with pytest.raises(AuthenticationError, match="20003"):
        metrika().get_calls_uploading(20003, 1)
    assert sandbox.state()["uploads"] == []


def test_test_connection_good_and_bad(sandbox: Any, metrika: Any, add_connection: Any) -> None:
    ok, message = metrika().test_connection()
    assert ok, message
    bad = add_connection(
        "ym_bad_tc", conn_type="yandexmetrika", host=sandbox.url, password="bad-oauth-token-2"
    )
    ok, message = metrika(bad).test_connection()
    assert not ok and "403" in message and "bad-oauth-token-2" not in message
    with_counter = add_connection(
        "ym_counter", conn_type="yandexmetrika", host=sandbox.url, password="sandbox-ym-token",
        extra={"counter_id": "20003"},
    )  # fmt: skip
    ok, message = metrika(with_counter).test_connection()
    assert not ok and "20003" in message


def test_hook_is_an_http_hook_with_our_conn_type() -> None:
    from airflow.providers.http.hooks.http import HttpHook

    assert issubclass(MetrikaHook, HttpHook)
    assert MetrikaHook.conn_type == "yandexmetrika"
    assert MetrikaHook.default_conn_name == "metrika_default"
