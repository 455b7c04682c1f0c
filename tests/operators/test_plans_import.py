"""PlansImportOperator against the sandbox: real HTTP on loopback, real hook, real ledger on disk."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowSkipException

from calltouch_metrika.exceptions import AuthenticationError, PlanFileError, ValidationError
from calltouch_metrika.hooks.calltouch import CalltouchHook
from calltouch_metrika.operators.calltouch_plans import PlansImportOperator
from calltouch_metrika.sensors.calltouch import PlansImportStatusSensor
from calltouch_metrika.storage import read_plans_ledger_entry
from calltouch_metrika.transforms.plans import PlanBatch, map_violations
from tests.helpers import SEED_BODY_ITEMS, SEED_PLAN_ROWS, write_plan

SITE_ID = 10001


def many_rows(n: int) -> list[str]:
    return [f"2026-12-01,2026-12-31,src{i},cpc,,,,Площадки,Бюджет,{1000 + i}" for i in range(n)]


def importer(plan: Path, root: Path, **kwargs: Any) -> PlansImportOperator:
    return PlansImportOperator(task_id="import_plans", plans_file=str(plan), storage_root=str(root), **kwargs)


def waiter(imports: Any, **kwargs: Any) -> PlansImportStatusSensor:
    kwargs = {"deferrable": False, "poke_interval": 0.2, "max_poke_interval": 0.5, "timeout": 60, **kwargs}
    return PlansImportStatusSensor(task_id="wait_for_import", imports=imports, **kwargs)


def imports_of(sandbox: Any) -> list[dict[str, Any]]:
    return sandbox.state()["plans_imports"]


def state_of(sandbox: Any) -> dict[str, Any]:
    return sandbox.state()


def test_seed_example_body_is_accepted_through_the_operator(sandbox: Any, tmp_path: Path) -> None:
    sandbox.reset(plans_in_progress_seconds=0)
    plan = write_plan(tmp_path / "seed.csv", SEED_PLAN_ROWS)
    out = importer(plan, tmp_path / "data").execute(context={})

    state = imports_of(sandbox)
    assert len(state) == 1
    assert state[0]["site_id"] == SITE_ID
    assert state[0]["items"] == SEED_BODY_ITEMS
    assert [(o["import_log_id"], o["rows"], o["file"], o["site_id"]) for o in out] == [
        (state[0]["id"], [2, 3, 4], "seed.csv", SITE_ID)
    ]
    entry = read_plans_ledger_entry(_ledger(out[0]))
    assert entry is not None and entry["state"] == "sent" and entry["import_log_id"] == state[0]["id"]
    assert Path(out[0]["ledger"].removeprefix("file://")).is_relative_to(
        tmp_path / "data" / "calltouch" / "plans_ledger" / f"site={SITE_ID}"
    )
    assert out[0]["ledger"].endswith(f"/{out[0]['sha256']}.json")


def _ledger(entry: dict[str, Any]) -> Any:
    from airflow.sdk import ObjectStoragePath

    return ObjectStoragePath(entry["ledger"])


def test_bad_file_is_refused_before_any_api_call(sandbox: Any, tmp_path: Path) -> None:
    plan = write_plan(
        tmp_path / "bad.csv",
        [
            "2021-04-01,2021-04-02,,,,,,Лиды,Уникальные лиды,100",  # no dimension (seed error 3)
            "2021-04-01,2021-04-20,google,cpc,,,,,Выручка,5",  # empty type (seed error 3)
            "2021-04-01,2021-04-20,google,cpc,,,,Выручка,Выручка,5",  # type not allowed (seed error 3)
            "2021-04-31,2021-04-20,google,cpc,,,,Лиды,Все лиды,5",  # bad date (seed error 4)
            "2021-04-21,2021-04-20,google,cpc,,,,Лиды,Все лиды,5",  # dateFrom > dateTo (seed error 4)
            "2021-04-01,,google,cpc,,,,Лиды,Все лиды,5",  # missing dateTo (seed error 5)
            "2021-04-01,2021-04-20,google,cpc,,,,Пользовательские,Бюджет,5",  # name not unique (seed error 6)
            "2021-04-01,2021-04-20,google,cpc,,,,Лиды,Все лиды,1.5",  # not an integer
        ],
    )
    with pytest.raises(PlanFileError) as exc:
        importer(plan, tmp_path / "data").execute(context={})
    message = str(exc.value)
    for expected in [
        "bad.csv:2: source: at least one of source, medium, campaign, content, keyword must be filled",
        "bad.csv:3: metric_type: must not be empty",
        "bad.csv:4: metric_type: unknown metric type 'Выручка'",
        "bad.csv:5: date_from: '2021-04-31' is not a valid date",
        "bad.csv:6: date_from: date_from 2021-04-21 is after date_to 2021-04-20",
        "bad.csv:7: date_to: must not be empty",
        "bad.csv:8: metric_name: custom column name 'Бюджет' collides with the Calltouch metric",
        "bad.csv:9: value: '1.5' is not an integer",
    ]:
        assert expected in message
    assert exc.value.problems and len(exc.value.problems) == 8
    state = state_of(sandbox)
    assert state["plans_imports"] == []
    assert state["requests"]["total"] == 0


def test_missing_file_is_a_clear_error(sandbox: Any, tmp_path: Path) -> None:
    with pytest.raises(PlanFileError, match=r"nope\.csv: file: not found at"):
        importer(tmp_path / "nope.csv", tmp_path / "data").execute(context={})


BATCH = PlanBatch(file="plan.csv", index=0, rows=(2, 3, 5), items=())


def good_item(**over: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "dateFrom": "01-04-2021",
        "dateTo": "02-04-2021",
        "source": "yandex",
        "metric": {"type": "Лиды", "name": "Все лиды", "value": 1},
    }
    item.update(over)
    return item


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        pytest.param(
            [good_item(), {k: v for k, v in good_item().items() if k != "source"}],
            [
                "plan.csv:3: source: Должно быть заполнено одно или несколько из полей: source, medium, campaign, "
                "content, keyword"
            ],
            id="no-dimension",
        ),
        pytest.param(
            [good_item(metric={"type": "", "name": "Все лиды", "value": 1})],
            ["plan.csv:2: metric_type: Значение не должно быть пустым."],
            id="empty-type",
        ),
        pytest.param(
            [good_item(), good_item(), good_item(metric={"type": "Лиды", "name": "Выручка", "value": 1})],
            ["plan.csv:5: metric_name: Значение не совпадает с одним из допустимых."],
            id="name-not-allowed",
        ),
        pytest.param(
            [good_item(dateTo="31-02-2021")],
            ["plan.csv:2: date_to: Значение не является правильной датой."],
            id="bad-date",
        ),
        pytest.param(
            [good_item(dateFrom="03-04-2021")],
            ["plan.csv:2: date_from: Значение dateFrom должно быть меньше или равно dateTo"],
            id="date-order",
        ),
        pytest.param(
            [good_item(metric={"type": "Пользовательские", "name": "Выручка", "value": 1})],
            ["plan.csv:2: metric_name: Название пользовательского столбца не уникально, импорт невозможен."],
            id="custom-name-not-unique",
        ),
        pytest.param(
            [{k: v for k, v in good_item().items() if k != "dateTo"}],
            ['plan.csv:rows 2-3,5: request: …В запросе не указано обязательное поле "dateTo"'],
            id="missing-field",
        ),
    ],
)
def test_server_side_violations_are_shown_as_file_rows(
    sandbox: Any, items: list[dict[str, Any]], expected: list[str]
) -> None:
    """Items that skip the file validator: the API's own errors (seed 001 cases 3-6), mapped back to rows."""
    with pytest.raises(ValidationError) as exc:
        CalltouchHook("calltouch_default").plans_import_add(items)
    lines = map_violations(BATCH, exc.value.violations or [("", str(exc.value))])
    assert len(lines) == len(expected), lines
    for got, want in zip(lines, expected, strict=True):  # "…" stands for the hook's wording
        head, _, tail = want.partition("…")
        assert got.startswith(head) and got.endswith(tail), (got, want)
    assert imports_of(sandbox) == []


def test_wrong_token_is_an_authentication_error_without_the_token(
    sandbox: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_CALLTOUCH_BAD",
        json.dumps(
            {
                "conn_type": "calltouch",
                "host": sandbox.url,
                "password": "wrong-token-123456",
                "extra": {"site_id": "10001"},
            }
        ),
    )
    plan = write_plan(tmp_path / "p.csv", SEED_PLAN_ROWS[:1])
    with pytest.raises(AuthenticationError) as exc:
        importer(plan, tmp_path / "data", calltouch_conn_id="calltouch_bad").execute(context={})
    assert "wrong-token-123456" not in str(exc.value)
    assert imports_of(sandbox) == []


def test_250_rows_are_sent_in_three_batches_and_three_statuses_awaited(sandbox: Any, tmp_path: Path) -> None:
    sandbox.reset(plans_in_progress_seconds=0.5)
    plan = write_plan(tmp_path / "big.csv", many_rows(250))
    out = importer(plan, tmp_path / "data").execute(context={})

    state = imports_of(sandbox)
    assert [len(p["items"]) for p in state] == [100, 100, 50]
    assert [o["import_log_id"] for o in out] == [p["id"] for p in state]
    assert [(o["rows"][0], o["rows"][-1], len(o["rows"])) for o in out] == [
        (2, 101, 100),
        (102, 201, 100),
        (202, 251, 50),
    ]
    assert [p["items"][0]["source"] for p in state] == ["src0", "src100", "src200"]

    statuses = waiter(out).execute(context={})
    assert statuses == {str(p["id"]): "success" for p in state}
    assert [p["status"] for p in imports_of(sandbox)] == ["success"] * 3
    assert [read_plans_ledger_entry(_ledger(o))["state"] for o in out] == ["succeeded"] * 3


def test_unchanged_file_sends_nothing(sandbox: Any, tmp_path: Path) -> None:
    sandbox.reset(plans_in_progress_seconds=0)
    plan = write_plan(tmp_path / "p.csv", many_rows(120))
    first = importer(plan, tmp_path / "data").execute(context={})
    waiter(first).execute(context={})
    assert len(imports_of(sandbox)) == 2
    requests_before = state_of(sandbox)["requests"]["total"]

    again = importer(plan, tmp_path / "data").execute(context={})
    assert again == []
    assert len(imports_of(sandbox)) == 2
    assert state_of(sandbox)["requests"]["total"] == requests_before  # not even a status check
    assert waiter(again).execute(context={}) == {}


def test_only_changed_batches_are_sent_again(sandbox: Any, tmp_path: Path) -> None:
    sandbox.reset(plans_in_progress_seconds=0)
    rows = many_rows(150)
    plan = write_plan(tmp_path / "p.csv", rows)
    waiter(importer(plan, tmp_path / "data").execute(context={})).execute(context={})

    rows[120] = rows[120].replace(",1120", ",9999")  # a row of the second batch changes
    write_plan(plan, rows)
    out = importer(plan, tmp_path / "data").execute(context={})
    assert [(o["rows"][0], o["rows"][-1]) for o in out] == [(102, 151)]
    state = imports_of(sandbox)
    assert len(state) == 3
    assert {
        "source": state[-1]["items"][20]["source"],
        "value": state[-1]["items"][20]["metric"]["value"],
    } == {"source": "src120", "value": 9999}


def test_sent_but_not_awaited_batches_are_checked_not_resent(sandbox: Any, tmp_path: Path) -> None:
    """A run that sent but never saw the status (sensor failed/killed) -> the next run asks, not resends."""
    sandbox.reset(plans_in_progress_seconds=0)
    plan = write_plan(tmp_path / "p.csv", SEED_PLAN_ROWS)
    first = importer(plan, tmp_path / "data").execute(context={})
    assert read_plans_ledger_entry(_ledger(first[0]))["state"] == "sent"

    again = importer(plan, tmp_path / "data").execute(context={})
    assert again == []
    assert len(imports_of(sandbox)) == 1
    assert read_plans_ledger_entry(_ledger(first[0]))["state"] == "succeeded"


def test_in_progress_batch_from_an_earlier_run_is_awaited_again(sandbox: Any, tmp_path: Path) -> None:
    sandbox.reset(plans_in_progress_seconds=3600)
    plan = write_plan(tmp_path / "p.csv", SEED_PLAN_ROWS)
    first = importer(plan, tmp_path / "data").execute(context={})
    again = importer(plan, tmp_path / "data").execute(context={})
    assert [(o["import_log_id"], o["reused"]) for o in again] == [(first[0]["import_log_id"], True)]
    assert len(imports_of(sandbox)) == 1


def test_failed_import_is_sent_again_next_run(sandbox: Any, tmp_path: Path) -> None:
    sandbox.reset(plans_in_progress_seconds=0)
    sandbox.faults(plans_status_error=True)
    plan = write_plan(tmp_path / "p.csv", SEED_PLAN_ROWS)
    first = importer(plan, tmp_path / "data").execute(context={})
    with pytest.raises(Exception, match=r"import\(s\) 1 \(p\.csv:rows 2-4\) as \['error'\]"):
        waiter(first).execute(context={})

    sandbox.faults()
    again = importer(plan, tmp_path / "data").execute(context={})
    assert [o["import_log_id"] for o in again] == [2]
    assert waiter(again).execute(context={}) == {"2": "success"}
    assert read_plans_ledger_entry(_ledger(again[0]))["state"] == "succeeded"


def test_dry_run_sends_and_writes_nothing(sandbox: Any, tmp_path: Path) -> None:
    plan = write_plan(tmp_path / "p.csv", many_rows(250))
    out = importer(plan, tmp_path / "data", dry_run="True").execute(context={})
    assert out == []
    state = state_of(sandbox)
    assert state["plans_imports"] == []
    assert state["requests"]["total"] == 0
    assert not (tmp_path / "data").exists()


def test_force_sends_again_what_was_imported(sandbox: Any, tmp_path: Path) -> None:
    sandbox.reset(plans_in_progress_seconds=0)
    plan = write_plan(tmp_path / "p.csv", SEED_PLAN_ROWS)
    waiter(importer(plan, tmp_path / "data").execute(context={})).execute(context={})
    out = importer(plan, tmp_path / "data", force="true").execute(context={})
    assert [o["import_log_id"] for o in out] == [2]
    assert [p["items"] for p in imports_of(sandbox)] == [SEED_BODY_ITEMS, SEED_BODY_ITEMS]


def test_only_file_skips_other_files(sandbox: Any, tmp_path: Path) -> None:
    plan = write_plan(tmp_path / "p.csv", SEED_PLAN_ROWS)
    with pytest.raises(AirflowSkipException, match=r"imports only 'other\.csv'"):
        importer(plan, tmp_path / "data", only_file="other.csv").execute(context={})
    assert imports_of(sandbox) == []


def test_sample_file_name_resolves_under_include_plans(sandbox: Any, tmp_path: Path) -> None:
    sandbox.reset(plans_in_progress_seconds=0)
    out = PlansImportOperator(
        task_id="t", plans_file="plans_10001.csv", storage_root=str(tmp_path), site_id="10001"
    ).execute(context={})
    assert [o["file"] for o in out] == ["plans_10001.csv"]
    assert len(imports_of(sandbox)[0]["items"]) == 13
