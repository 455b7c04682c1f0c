"""CalltouchExtractOperator(kind="requests") against the sandbox: every seed-004 filter and flag.

The sandbox applies every filter of seed 004 to its generated journal, so a filter that reaches the
API under a wrong name or in a wrong format shows up as a wrong *result*. Each test computes the
expected requests from the sandbox's pure generator (``sandbox.generators.generate_requests``: the
same seed, site, day and volume give the same records) with the seed's semantics (``subject``
"starts with", ``keywords`` "contains", ``city``/``source``/``medium``/``manager`` "exactly",
``ani.*``/``email.*`` by ``filterMode``), and checks that the Parquet file the operator wrote holds
exactly those request ids. Every chosen filter value is asserted to be *selective* on that day, so a
filter the API silently ignored would fail the test.

The operator runs for real (real hook, HTTP over loopback, real transform, real files) through its
``execute`` with an explicit ``date_from``; the DAG-level run is in tests/dags/test_requests_dag.py.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow.parquet as pq
import pytest

from calltouch_metrika.hooks.calltouch import REQUESTS_PARAMS
from calltouch_metrika.operators.calltouch import CalltouchExtractOperator
from calltouch_metrika.transforms.requests import REQUESTS_SCHEMA
from sandbox.generators import generate_requests

pytestmark = pytest.mark.integration

SITE_ID = 10001
TZ = "Europe/Moscow"
SEED = "42"
VOLUME = 40
#: A day whose mm/dd/yyyy and dd/mm/yyyy spellings are both valid and different (11/05 vs 05/11):
#: a date sent in the calls' format would fetch May 11th and fail every test below.
DAY = date(2026, 11, 5)

Record = dict[str, Any]


def generated(day: date = DAY, volume: int = VOLUME) -> list[Record]:
    """The sandbox's requests of ``day`` for SITE_ID, before any filter (private ``_`` keys included)."""
    return generate_requests(SEED, SITE_ID, day, volume, TZ)


def run_extract(root: Path, *, day: date = DAY, via: str = "api_params", **params: Any) -> tuple[dict, Any]:
    """Run the operator for one local day; return its XCom value and the table it wrote."""
    op = CalltouchExtractOperator(
        task_id="extract_requests",
        kind="requests",
        calltouch_conn_id="calltouch_default",
        site_id=SITE_ID,
        date_from=day.isoformat(),
        storage_root=str(root),
        timezone=TZ,
        **{via: params},
    )
    result = op.execute({})
    expected_file = (
        root / "calltouch" / "requests" / f"site={SITE_ID}" / f"date={day.isoformat()}" / "requests.parquet"
    )
    assert expected_file.is_file(), result
    assert Path(result["path"].removeprefix("file://")) == expected_file
    return result, pq.read_table(expected_file)


def ids(table: Any) -> list[int]:
    return table.column("request_id").to_pylist()


def local_window(day: date) -> tuple[int, int]:
    start = int(datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(TZ)).timestamp())
    return start, start + 86400 - 1


# ---------------------------------------------------------------------------------------------
# The day itself
# ---------------------------------------------------------------------------------------------


def test_one_local_day_lands_in_its_partition(sandbox: Any, tmp_path: Path) -> None:
    expected = generated()
    result, table = run_extract(tmp_path)
    assert table.schema.equals(REQUESTS_SCHEMA)
    assert ids(table) == [r["requestId"] for r in expected]
    assert result["rows"] == len(expected) == VOLUME
    # The journal is not paginated: one local day is one API request.
    assert sandbox.state()["requests"]["by_api"]["calltouch"] == 1
    assert (result["site_id"], result["kind"]) == (SITE_ID, "requests")
    assert (result["date_from"], result["date_to"]) == ("2026-11-05", "2026-11-06")
    # mm/dd/yyyy reached the API: every request was created on the local day 2026-11-05.
    lo, hi = local_window(DAY)
    assert all(lo * 1000 <= ms <= hi * 1000 + 999 for ms in table.column("date_ms").to_pylist())
    assert all(s.startswith("05/11/2026 ") for s in table.column("date_str").to_pylist())
    # Values survive API -> JSON -> Arrow -> Parquet unchanged.
    rows = {r["request_id"]: r for r in table.to_pylist()}
    for rec in expected:
        row = rows[rec["requestId"]]
        assert row["date_ms"] == rec["date"]
        assert row["request_number"] == rec["requestNumber"]
        assert row["subject"] == rec["subject"]
        assert row["manager"] == rec["manager"]
        assert row["site_id"] == SITE_ID
        assert row["comments"] == [
            {
                "comment_id": c["commentId"],
                "request_id": c["requestId"],
                "comment": c["comment"],  # trailing "\n" included
                "party_id": c["partyId"],
                "party_name": c["partyName"],
            }
            for c in rec["comments"]
        ]
        assert row["ct_client_id"] == (None if rec["ctClientId"] is None else str(rec["ctClientId"]))
        assert row["ya_client_id"] == (rec["session"] or {}).get("yaClientId")
    assert any(c["comment"].endswith("\n") for r in rows.values() for c in r["comments"] or ()), (
        "the generator should produce at least one comment with a trailing newline on this day"
    )


def test_empty_day_writes_an_empty_file_with_the_full_schema(sandbox: Any, tmp_path: Path) -> None:
    sandbox.reset(requests_per_day=0)
    result, table = run_extract(tmp_path)
    assert result["rows"] == 0
    assert table.num_rows == 0
    assert table.schema.equals(REQUESTS_SCHEMA)


def test_params_argument_is_the_same_as_api_params(sandbox: Any, tmp_path: Path) -> None:
    """The documented contract passes filters as ``params={...}``; they must reach the API too."""
    subject = generated()[0]["subject"]
    expected = [r["requestId"] for r in generated() if r["subject"].startswith(subject)]
    assert 0 < len(expected) < VOLUME
    _, table = run_extract(tmp_path, via="params", subject=subject)
    assert ids(table) == expected


def test_unknown_parameter_is_a_clear_error(sandbox: Any, tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="with_call_tags"):
        run_extract(tmp_path, with_call_tags=True)  # a calls flag, not a requests one


# ---------------------------------------------------------------------------------------------
# Every filter: (params, predicate) built from the day's data, so values exist and are selective
# ---------------------------------------------------------------------------------------------

FilterCase = Callable[[list[Record]], tuple[dict[str, Any], Callable[[Record], bool]]]


def _session(r: Record) -> Record:
    return r["session"] or {}


def _phones(r: Record) -> list[str]:
    return [p["phoneNumber"] for p in r["client"]["phones"]]


def _emails(r: Record) -> list[str]:
    return [c["contactValue"] for c in r["client"]["contacts"]]


def _most_common(values: list[Any]) -> Any:
    values = [v for v in values if v not in (None, "")]
    return max(sorted(set(values), key=str), key=values.count)


FILTERS: dict[str, FilterCase] = {
    # Form name "starts with" the value.
    "subject": lambda rs: (
        {"subject": "Заявка"},
        lambda r: r["subject"].startswith("Заявка"),
    ),
    # Keyword "contains" the value.
    "keywords": lambda rs: (
        {"keywords": "диван"},
        lambda r: "диван" in (_session(r).get("keywords") or ""),
    ),
    "city": lambda rs: (
        {"city": (v := _most_common([_session(r).get("city") for r in rs]))},
        lambda r: _session(r).get("city") == v,
    ),
    "source": lambda rs: (
        {"source": "yandex"},
        lambda r: _session(r).get("source") == "yandex",
    ),
    "medium": lambda rs: (
        {"medium": "cpc"},
        lambda r: _session(r).get("medium") == "cpc",
    ),
    "manager": lambda rs: (
        {"manager": (v := _most_common([r["manager"] for r in rs]))},
        lambda r: r["manager"] == v,
    ),
    "request_id": lambda rs: (
        {"request_id": [rs[3]["requestId"], rs[7]["requestId"]]},
        lambda r: r["requestId"] in (rs[3]["requestId"], rs[7]["requestId"]),
    ),
    "request_number": lambda rs: (
        {"request_number": [rs[2]["requestNumber"], rs[5]["requestNumber"]]},
        lambda r: r["requestNumber"] in (rs[2]["requestNumber"], rs[5]["requestNumber"]),
    ),
    "ani_exact": lambda rs: (
        {"ani_value": _phones(rs[4])[0], "ani_filter_mode": "exact"},
        lambda r: _phones(rs[4])[0] in _phones(r),
    ),
    "ani_startwith": lambda rs: (
        {"ani_value": "+7 (9", "ani_filter_mode": "startwith"},
        lambda r: any(p.startswith("+7 (9") for p in _phones(r)),
    ),
    "ani_contains": lambda rs: (
        {"ani_value": _phones(rs[6])[0][-5:], "ani_filter_mode": "contains"},
        lambda r: any(_phones(rs[6])[0][-5:] in p for p in _phones(r)),
    ),
    "ani_default_mode_is_exact": lambda rs: (
        {"ani_value": _phones(rs[4])[0][:6]},
        lambda r: _phones(rs[4])[0][:6] in _phones(r),  # a prefix matches nothing exactly
    ),
    "email_exact": lambda rs: (
        {"email_value": (v := next(e for r in rs for e in _emails(r))), "email_filter_mode": "exact"},
        lambda r: v in _emails(r),
    ),
    "email_startwith": lambda rs: (
        {"email_value": "client", "email_filter_mode": "startwith"},
        lambda r: any(e.startswith("client") for e in _emails(r)),
    ),
    "email_contains": lambda rs: (
        {"email_value": "@mail.ru", "email_filter_mode": "contains"},
        lambda r: any("@mail.ru" in e for e in _emails(r)),
    ),
    "time_window": lambda rs: (
        {"time_from": "10:00:00", "time_to": "13:59:59"},
        lambda r: local_window(DAY)[0] + 10 * 3600 <= r["_ts"] <= local_window(DAY)[0] + 14 * 3600 - 1,
    ),
}


@pytest.mark.parametrize("case", sorted(FILTERS))
def test_filter_reaches_the_api(case: str, sandbox: Any, tmp_path: Path) -> None:
    records = generated()
    params, keep = FILTERS[case](records)
    expected = [r["requestId"] for r in records if keep(r)]
    if case == "ani_default_mode_is_exact":
        assert expected == []
    else:
        assert 0 < len(expected) < len(records), f"{case}: {params} must be selective on {DAY}"
    result, table = run_extract(tmp_path, **params)
    assert ids(table) == expected, params
    assert result["rows"] == len(expected)


def test_filters_combine(sandbox: Any, tmp_path: Path) -> None:
    records = generated()
    expected = [
        r["requestId"]
        for r in records
        if _session(r).get("source") == "yandex" and r["subject"].startswith("З")
    ]
    assert 0 < len(expected) < len(records)
    _, table = run_extract(tmp_path, source="yandex", subject="З")
    assert ids(table) == expected


def test_bind_to_session(sandbox: Any, tmp_path: Path) -> None:
    """bindTo=session selects requests whose *session* started on the day (some created days later)."""
    lo, hi = local_window(DAY)
    candidates = [r for d in range(3) for r in generated(DAY + timedelta(days=d))]
    expected = sorted(
        r["requestId"] for r in candidates if r["_session_ts"] is not None and lo <= r["_session_ts"] <= hi
    )
    by_request = [r["requestId"] for r in generated()]
    assert expected != sorted(by_request)
    _, table = run_extract(tmp_path, bind_to="session")
    assert sorted(ids(table)) == expected
    _, table = run_extract(tmp_path, bind_to="request")
    assert ids(table) == by_request


@pytest.mark.parametrize("model", [0, 1])
def test_attribution(model: int, sandbox: Any, tmp_path: Path) -> None:
    _, table = run_extract(tmp_path, attribution=model)
    sessions = [s for s in table.column("session").to_pylist() if s is not None]
    assert sessions and {s["attribution"] for s in sessions} == {model}


# ---------------------------------------------------------------------------------------------
# Every with* flag: the block is absent (null column) without it, present with it
# ---------------------------------------------------------------------------------------------

#: flag -> (column, how to tell the block was sent for a record)
FLAGS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "with_map_visits": ("map_visits", lambda v: v is not None),
    "with_request_tags": ("request_tags", lambda v: v is not None),
    "with_yandex_direct": ("yandex_direct", lambda v: v is not None),
    "with_google_adwords": ("google_adwords", lambda v: v is not None),
    "with_custom_fields": ("custom_fields", lambda v: v is not None),
    "with_widget_info": ("widget_info", lambda v: v is not None),
    "with_dcm": ("dcm", lambda v: v is not None),  # [] = asked, no sends; null = not asked
    "with_attrs": ("session", lambda s: s is not None and s["attrs"] is not None),
}


def test_every_seed_flag_is_covered() -> None:
    """Every with* parameter of the hook's table has a test here; every filter too."""
    flags = {name for name in REQUESTS_PARAMS if name.startswith("with_")}
    assert flags == set(FLAGS)
    covered = (
        {k for case in FILTERS for k in FILTERS[case](generated())[0]} | {"bind_to", "attribution"} | flags
    )
    assert covered == set(REQUESTS_PARAMS)


@pytest.mark.parametrize("flag", sorted(FLAGS))
def test_flag_reaches_the_api(flag: str, sandbox: Any, tmp_path: Path) -> None:
    column, sent = FLAGS[flag]
    _, without = run_extract(tmp_path)
    assert not any(sent(v) for v in without.column(column).to_pylist()), f"{column} sent without {flag}"
    _, with_flag = run_extract(tmp_path, **{flag: True})
    values = with_flag.column(column).to_pylist()
    assert any(sent(v) for v in values), f"{column} missing with {flag}=True"
    if flag == "with_request_tags":
        tags = [t for names in with_flag.column("tag_names").to_pylist() for t in names]
        # The generator's "Целевой, Повторный" is one names entry holding two tags (seed 004: comma).
        assert tags and all("," not in t for t in tags)


# ---------------------------------------------------------------------------------------------
# A journal item that cannot be stored: left out, logged and counted; the day is written
# ---------------------------------------------------------------------------------------------


def test_non_object_and_untypable_records_are_counted_rejects_not_a_failed_day(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: one ``null`` in the journal failed the day with RequestRecordError (finding 6)."""
    import json
    import threading

    from tests.hooks.test_answer_shapes import _Server

    server = _Server()
    server.answer(
        "requests", [{"requestId": 1}, None, {"requestId": 2, "session": "moscow"}, {"requestId": 3}]
    )
    thread = threading.Thread(target=server.httpd.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv(
        "AIRFLOW_CONN_SHAPES_CT",
        json.dumps({"conn_type": "calltouch", "host": server.url, "password": "shapes-ct-token"}),
    )
    try:
        op = CalltouchExtractOperator(
            task_id="extract_requests",
            kind="requests",
            calltouch_conn_id="shapes_ct",
            site_id=SITE_ID,
            date_from=DAY.isoformat(),
            storage_root=str(tmp_path),
            timezone=TZ,
        )
        result = op.execute({})
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
    table = pq.read_table(result["path"].removeprefix("file://"))
    assert ids(table) == [1, 3]
    assert result["rows"] == 2
    assert result["rejected"] == 2
    assert result["rejects_by_reason"] == {"invalid_value": 1, "malformed_record": 1}
    logged = capsys.readouterr().out  # the task log (Airflow's structlog writes to stdout here)
    assert "item 1 (requestId None) left out: malformed_record" in logged
    assert "item 2 (requestId 2) left out: invalid_value" in logged
