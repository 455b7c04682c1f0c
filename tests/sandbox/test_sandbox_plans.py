"""Calltouch plans import: every error body of seed 001, and the status life cycle."""

from __future__ import annotations

import copy
import time

import pytest
import requests

from tests.helpers import SEED_BODY_ITEMS

pytestmark = pytest.mark.integration

SEED_EXAMPLE = {"items": SEED_BODY_ITEMS}  # seed 001's example body, verbatim


def violations(*pairs: tuple[str, str]) -> dict:
    return {
        "meta": [],
        "data": {
            "type": "validationError",
            "apiErrorData": None,
            "validationErrorData": {"violations": [{"fieldPath": f, "message": m} for f, m in pairs]},
        },
    }


def post(urls, headers, body=None, data=None):
    return requests.post(urls.plans("add"), headers=headers, json=body, data=data, timeout=30)


def wait_status(urls, headers, import_id, until: set[str], timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        r = requests.post(urls.plans(f"{import_id}/status"), headers=headers, timeout=30)
        assert r.status_code == 200
        status = r.json()["data"]["status"]
        if status in until or time.monotonic() > deadline:
            return status
        time.sleep(0.05)


def test_seed_example_in_progress_then_success(api, urls, plans_headers):
    api.configure(plans_in_progress_seconds=0.3)
    r = post(urls, plans_headers, SEED_EXAMPLE)
    assert r.status_code == 200
    body = r.json()
    assert body["meta"] == [] and isinstance(body["data"]["importLogId"], int)
    import_id = body["data"]["importLogId"]
    first = requests.post(urls.plans(f"{import_id}/status"), headers=plans_headers, timeout=30).json()
    assert first == {"meta": [], "data": {"status": "in progress...", "items": SEED_EXAMPLE["items"]}}
    assert wait_status(urls, plans_headers, import_id, {"success", "error"}) == "success"
    state = api.state()["plans_imports"]
    assert state == [{"id": import_id, "site_id": 10001, "items": SEED_EXAMPLE["items"], "status": "success"}]


def test_status_error_fault(api, urls, plans_headers):
    api.configure(plans_in_progress_seconds=0)
    api.faults(plans_status_error=True)
    import_id = post(urls, plans_headers, SEED_EXAMPLE).json()["data"]["importLogId"]
    assert wait_status(urls, plans_headers, import_id, {"success", "error"}) == "error"


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Access-Token": "nope", "SiteId": "10001"}, 401),
        ({"Access-Token": "sandbox-ct-token"}, 403),
        ({"Access-Token": "sandbox-ct-token", "SiteId": "99999"}, 403),
    ],
)
def test_auth_error_body(api, urls, headers, status):
    r = post(urls, headers, SEED_EXAMPLE)
    assert r.status_code == status
    assert r.json() == {"message": "Access token не найден"}
    r = requests.post(urls.plans("1/status"), headers=headers, timeout=30)
    assert r.json() == {"message": "Access token не найден"}


@pytest.mark.parametrize("raw", [b"", b"{not json", b"   "])
def test_json_syntax_error_body(api, urls, plans_headers, raw):
    r = post(urls, {**plans_headers, "Content-Type": "application/json"}, data=raw)
    assert r.status_code == 400
    assert r.json() == {
        "meta": [],
        "data": {
            "type": "apiError",
            "apiErrorData": {
                "errorCode": 1,
                "errorMessage": "Синтаксическая ошибка JSON в запросе или запрос пустой",
                "errorDescription": None,
            },
            "validationErrorData": None,
        },
    }


def _item(**changes):
    item = copy.deepcopy(SEED_EXAMPLE["items"][1])
    for key, value in changes.items():
        if key.startswith("metric_"):
            item["metric"][key[7:]] = value
        elif value is ...:
            item.pop(key)
        else:
            item[key] = value
    return item


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        (
            [_item(source=..., medium=...)],
            [
                (
                    "items[0].source",
                    "Должно быть заполнено одно или несколько из полей: source, medium, campaign, content, keyword",
                )
            ],
        ),
        ([_item(metric_type="")], [("items[0].metric.type", "Значение не должно быть пустым.")]),
        (
            [_item(metric_type="Звонки")],
            [("items[0].metric.type", "Значение не совпадает с одним из допустимых.")],
        ),
        (
            [_item(metric_name="Нет такой метрики")],
            [("items[0].metric.name", "Значение не совпадает с одним из допустимых.")],
        ),
        ([], [("items", "Эта коллекция должна содержать 1 элемент или больше.")]),
        ([_item()] * 101, [("items", "Эта коллекция должна содержать 100 элементов или меньше.")]),
        (
            [_item(), _item(dateTo="31-02-2021")],
            [("items[1].dateTo", "Значение не является правильной датой.")],
        ),
        ([_item(dateTo="2021-04-20")], [("items[0].dateTo", "Значение не является правильной датой.")]),
        (
            [_item(dateFrom="21-04-2021")],
            [("items[0].dateFrom", "Значение dateFrom должно быть меньше или равно dateTo")],
        ),
        (
            [_item(metric_type="Пользовательские", metric_name="Выручка")],
            [("items[0].metric.name", "Название пользовательского столбца не уникально, импорт невозможен.")],
        ),
        (
            [_item(metric_type="Цели", metric_name="Все звонки")],
            [("items[0].metric.name", "Название пользовательского столбца не уникально, импорт невозможен.")],
        ),
        ([_item(metric_value=1.5)], [("items[0].metric.value", "Значение должно быть типа int.")]),
        ([_item(metric_value="10")], [("items[0].metric.value", "Значение должно быть типа int.")]),
        (
            [_item(source=..., medium=..., metric_type="")],
            [
                (
                    "items[0].source",
                    "Должно быть заполнено одно или несколько из полей: source, medium, campaign, content, keyword",
                ),
                ("items[0].metric.type", "Значение не должно быть пустым."),
            ],
        ),
    ],
)
def test_violation_bodies(api, urls, plans_headers, items, expected):
    r = post(urls, plans_headers, {"items": items})
    assert r.status_code == 400
    assert r.json() == violations(*expected)
    assert api.state()["plans_imports"] == []


@pytest.mark.parametrize(
    ("missing", "name"), [("dateTo", "dateTo"), ("dateFrom", "dateFrom"), ("metric", "metric")]
)
def test_missing_required_field_body(api, urls, plans_headers, missing, name):
    r = post(urls, plans_headers, {"items": [_item(**{missing: ...})]})
    assert r.status_code == 400
    assert r.json() == {"meta": [], "data": {"message": f'В запросе не указано обязательное поле "{name}"'}}


def test_missing_items_and_metric_value(api, urls, plans_headers):
    r = post(urls, plans_headers, {"rows": []})
    assert r.json() == {"meta": [], "data": {"message": 'В запросе не указано обязательное поле "items"'}}
    item = _item()
    del item["metric"]["value"]
    r = post(urls, plans_headers, {"items": [item]})
    assert r.json() == {"meta": [], "data": {"message": 'В запросе не указано обязательное поле "value"'}}


def test_unknown_import_is_404_and_site_scoped(api, urls, plans_headers):
    import_id = post(urls, plans_headers, SEED_EXAMPLE).json()["data"]["importLogId"]
    other_site = {**plans_headers, "SiteId": "10002"}
    for headers, tail in ((plans_headers, "999/status"), (other_site, f"{import_id}/status")):
        r = requests.post(urls.plans(tail), headers=headers, timeout=30)
        assert r.status_code == 404
        assert r.json()["data"]["type"] == "apiError"
