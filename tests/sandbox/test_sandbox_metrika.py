"""Yandex Metrika offline calls: upload, strict CSV parsing, statuses, list, auth."""

from __future__ import annotations

import time

import pytest
import requests

pytestmark = pytest.mark.integration

KNOWN = "1727978509569360306"  # generator's ClientId format: 10-digit first-visit time + 9 digits
TS = "1732066244"  # 2024-11-20


def upload(urls, oauth, text: str | bytes, counter: int = 20001, **params):
    data = text.encode("utf-8") if isinstance(text, str) else text
    return requests.post(
        urls.metrika("upload_calls", counter),
        headers=oauth,
        params=params,
        files={"file": ("calls.csv", data, "text/csv")},
        timeout=30,
    )


def status_of(urls, oauth, upload_id: int) -> str:
    r = requests.get(urls.metrika(f"calls_uploading/{upload_id}"), headers=oauth, timeout=30)
    assert r.status_code == 200
    return r.json()["uploading"]["status"]


def wait_terminal(urls, oauth, upload_id: int, timeout: float = 15.0) -> list[str]:
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = status_of(urls, oauth, upload_id)
        if not seen or seen[-1] != status:
            seen.append(status)
        if status in ("PROCESSED", "LINKAGE_FAILURE"):
            break
        time.sleep(0.03)
    return seen


def test_upload_generated_calls_reaches_processed(api, urls, oauth):
    api.configure(status_step_seconds=0.15)
    calls = requests.get(
        urls.calls(),
        params={"clientApiId": "sandbox-ct-token", "dateFrom": "20/11/2024", "dateTo": "20/11/2024"},
        timeout=30,
    ).json()
    rows = [
        f'{c["yaClientId"]},{c["timestamp"]},{"0" if c["sessionId"] else "1"},"{c["callerNumber"]}"'
        for c in calls
        if c["yaClientId"]
    ]
    text = "ClientId,DateTime,StaticCall,Tag\n" + "\n".join(rows) + "\n"
    r = upload(urls, oauth, text, comment="run-1", new_goal_name="Звонок", client_id_type="CLIENT_ID")
    assert r.status_code == 200
    up = r.json()["uploading"]
    assert set(up) >= {
        "id",
        "create_time",
        "source_quantity",
        "line_quantity",
        "comment",
        "client_id_type",
        "status",
        "static_calls_quantity",
        "dynamic_calls_quantity",
    }
    assert up["status"] == "PREPARED" and up["comment"] == "run-1" and up["client_id_type"] == "CLIENT_ID"
    assert up["source_quantity"] == up["line_quantity"] == len(rows)
    seen = wait_terminal(urls, oauth, up["id"])
    order = ["PREPARED", "UPLOADED", "EXPORTED", "MATCHED", "PROCESSED"]
    assert seen[-1] == "PROCESSED"
    assert [order.index(s) for s in seen] == sorted(order.index(s) for s in seen)
    stored = api.state()["uploads"][0]
    assert stored["columns"] == ["ClientId", "DateTime", "StaticCall", "Tag"]
    assert stored["rows"][0] == dict(zip(stored["columns"], rows[0].replace('"', "").split(","), strict=True))
    assert stored["new_goal_name"] == "Звонок" and stored["status"] == "PROCESSED"


def test_unknown_identifiers_end_in_linkage_failure(api, urls, oauth):
    api.configure(status_step_seconds=0.05)
    r = upload(urls, oauth, f"ClientId,DateTime\n999,{TS}\n12345,{TS}\n")
    assert r.status_code == 200
    assert wait_terminal(urls, oauth, r.json()["uploading"]["id"])[-1] == "LINKAGE_FAILURE"


def test_zero_step_is_immediately_final(api, urls, oauth):
    api.configure(status_step_seconds=0)
    up = upload(urls, oauth, f"ClientId,DateTime\n{KNOWN},{TS}\n").json()["uploading"]
    assert up["status"] == "PROCESSED"


def test_empty_identifier_rows_count_only_in_source_quantity(api, urls, oauth):
    text = f"ClientId,DateTime,StaticCall\n{KNOWN},{TS},0\n,{TS},1\nabc,{TS},0\n{KNOWN},{TS},1\n"
    up = upload(urls, oauth, text).json()["uploading"]
    assert (up["source_quantity"], up["line_quantity"]) == (4, 2)
    assert (up["static_calls_quantity"], up["dynamic_calls_quantity"]) == (1, 1)
    assert len(api.state()["uploads"][0]["rows"]) == 4


def test_quoting_bom_and_every_optional_column(api, urls, oauth):
    header = (
        "UserId,DateTime,StaticCall,Price,Currency,PhoneNumber,TalkDuration,HoldDuration,CallMissed,Tag,"
        "FirstTimeCaller,URL,CallTrackerURL"
    )
    row = (
        f'512345678,{TS},0,1500.50,RUB,+79991234567,120,15,0,"Целевой, ""VIP""\nвторая строка",1,'
        "https://divan-grad.ru/?a=1,https://my.calltouch.ru/calls/1"
    )
    up = upload(urls, oauth, "\ufeff" + header + "\r\n" + row + "\r\n", client_id_type="USER_ID").json()[
        "uploading"
    ]
    assert up["client_id_type"] == "USER_ID" and up["line_quantity"] == 1
    stored = api.state()["uploads"][0]["rows"][0]
    assert stored["Tag"] == 'Целевой, "VIP"\nвторая строка'
    assert stored["Price"] == "1500.50"


@pytest.mark.parametrize(
    ("text", "location"),
    [
        ("", "line 1"),
        (f"DateTime\n{TS}\n", "line 1"),  # no identifier
        (f"ClientId,UserId,DateTime\n{KNOWN},1,{TS}\n", "line 1"),  # two identifiers
        (f"ClientId\n{KNOWN}\n", "line 1, column DateTime"),
        (f"ClientId,DateTime,Foo\n{KNOWN},{TS},1\n", "line 1, column Foo"),
        (f"ClientId,DateTime,DateTime\n{KNOWN},{TS},{TS}\n", "line 1, column DateTime"),
        (f"ClientId,DateTime\n{KNOWN},{TS}000\n", "line 2, column DateTime"),  # milliseconds
        (f"ClientId,DateTime\n{KNOWN},2024-11-20 10:00:00\n", "line 2, column DateTime"),
        (f"ClientId,DateTime\n{KNOWN},{TS}\n{KNOWN},4102444800\n", "line 3, column DateTime"),  # year 2100
        (f"ClientId,DateTime\n{KNOWN},\n", "line 2, column DateTime"),
        (f"ClientId,DateTime,StaticCall\n{KNOWN},{TS},2\n", "line 2, column StaticCall"),
        (f"ClientId,DateTime,CallMissed\n{KNOWN},{TS},yes\n", "line 2, column CallMissed"),
        (f"ClientId,DateTime,FirstTimeCaller\n{KNOWN},{TS},true\n", "line 2, column FirstTimeCaller"),
        (f'ClientId,DateTime,Price\n{KNOWN},{TS},"10,5"\n', "line 2, column Price"),
        (f"ClientId,DateTime,Price\n{KNOWN},{TS},-10\n", "line 2, column Price"),
        (f"ClientId,DateTime,Currency\n{KNOWN},{TS},rub\n", "line 2, column Currency"),
        (f"ClientId,DateTime,Currency\n{KNOWN},{TS},RUR\n", "line 2, column Currency"),
        (f"ClientId,DateTime,PhoneNumber\n{KNOWN},{TS},+7 999 123 45 67\n", "line 2, column PhoneNumber"),
        (f"ClientId,DateTime,PhoneNumber\n{KNOWN},{TS},89991234567\n", "line 2, column PhoneNumber"),
        (f"ClientId,DateTime,TalkDuration\n{KNOWN},{TS},-5\n", "line 2, column TalkDuration"),
        (f"ClientId,DateTime,HoldDuration\n{KNOWN},{TS},1.5\n", "line 2, column HoldDuration"),
        (f"ClientId,DateTime\n{KNOWN},{TS},extra\n", "line 2"),
        (f'ClientId,DateTime,Tag\n{KNOWN},{TS},"unterminated\n', "line"),
        (
            f"ClientId,DateTime,Tag\n{KNOWN},{TS},".encode() + "Цена".encode("cp1251") + b"\n",
            "line 2, column Tag",
        ),
    ],
)
def test_invalid_file_is_400_naming_line_and_column(api, urls, oauth, text, location):
    api.reset(metrika_rps=1000, now="2024-11-21T00:00:00Z")
    r = upload(urls, oauth, text)
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["code"] == 400 and body["errors"][0]["error_type"] == "invalid_parameter"
    assert body["errors"][0]["location"].startswith(location)
    assert location in body["message"] or location == "line"
    assert api.state()["uploads"] == []


def test_client_id_type_must_match_the_column(api, urls, oauth):
    r = upload(urls, oauth, f"ClientId,DateTime\n{KNOWN},{TS}\n", client_id_type="YCLID")
    assert r.status_code == 400 and r.json()["errors"][0]["location"] == "line 1, column ClientId"


@pytest.mark.parametrize(
    ("params", "location"),
    [({"comment": "x" * 256}, "comment"), ({"client_id_type": "EMAIL"}, "client_id_type")],
)
def test_bad_query_parameters(api, urls, oauth, params, location):
    r = upload(urls, oauth, f"ClientId,DateTime\n{KNOWN},{TS}\n", **params)
    assert r.status_code == 400 and r.json()["errors"][0]["location"] == location


def test_missing_file_field(api, urls, oauth):
    r = requests.post(
        urls.metrika("upload_calls"), headers=oauth, files={"other": ("a.csv", b"x")}, timeout=30
    )
    assert r.status_code == 400
    assert r.json()["errors"][0]["error_type"] == "missing_parameter"


@pytest.mark.parametrize(
    ("header", "status", "error_type"),
    [
        ({}, 401, "unauthorized"),
        ({"Authorization": "sandbox-ym-token"}, 401, "unauthorized"),  # no OAuth scheme: no token given
        ({"Authorization": "OAuth wrong"}, 403, "invalid_token"),
        ({"Authorization": "Bearer wrong"}, 403, "invalid_token"),
    ],
)
def test_missing_token_is_401_wrong_token_is_403(api, urls, header, status, error_type):
    """Metrika's error reference (api-notes §3.5): ``unauthorized`` 401 without a token, ``invalid_token`` 403."""
    for r in (
        upload(urls, header, f"ClientId,DateTime\n{KNOWN},{TS}\n"),
        requests.get(urls.metrika("calls_uploadings"), headers=header, timeout=30),
        requests.get(urls.metrika("calls_uploading/1"), headers=header, timeout=30),
        requests.get(urls.metrika("calls_visit_join_threshold"), headers=header, timeout=30),
        requests.get(f"{urls.base}/management/v1/counters", headers=header, timeout=30),
    ):
        assert r.status_code == status
        body = r.json()
        assert body["code"] == status and body["errors"][0]["error_type"] == error_type


def test_foreign_counter_is_403(api, urls, oauth):
    r = upload(urls, oauth, f"ClientId,DateTime\n{KNOWN},{TS}\n", counter=30001)
    assert r.status_code == 403
    assert r.json()["errors"][0]["error_type"] == "access_denied"


def test_unknown_upload_is_404(api, urls, oauth):
    up = upload(urls, oauth, f"ClientId,DateTime\n{KNOWN},{TS}\n").json()["uploading"]
    for tail, counter in (("calls_uploading/999", 20001), (f"calls_uploading/{up['id']}", 20002)):
        r = requests.get(urls.metrika(tail, counter), headers=oauth, timeout=30)
        assert r.status_code == 404 and r.json()["errors"][0]["error_type"] == "not_found"


def test_list_is_newest_first_with_limit_and_offset(api, urls, oauth):
    ids = [
        upload(urls, oauth, f"ClientId,DateTime\n{KNOWN},{TS}\n", comment=f"c{i}").json()["uploading"]["id"]
        for i in range(5)
    ]
    upload(urls, oauth, f"ClientId,DateTime\n{KNOWN},{TS}\n", counter=20002)
    listed = requests.get(urls.metrika("calls_uploadings"), headers=oauth, timeout=30).json()["uploadings"]
    assert [u["id"] for u in listed] == ids[::-1]
    page = requests.get(
        urls.metrika("calls_uploadings"), headers=oauth, params={"limit": 2, "offset": 1}, timeout=30
    ).json()["uploadings"]
    assert [u["comment"] for u in page] == ["c3", "c2"]
    r = requests.get(urls.metrika("calls_uploadings"), headers=oauth, params={"limit": 0}, timeout=30)
    assert r.status_code == 400


def test_malformed_multipart_and_unknown_path_use_metrika_bodies(api, urls, oauth):
    r = requests.post(
        urls.metrika("upload_calls"),
        headers={**oauth, "Content-Type": "multipart/form-data"},
        data=b"garbage",
        timeout=30,
    )
    assert r.status_code == 400 and r.json()["errors"][0]["error_type"] in (
        "invalid_parameter",
        "missing_parameter",
    )
    r = requests.get(urls.metrika("no_such_thing"), headers=oauth, timeout=30)
    assert r.status_code == 404 and r.json()["errors"][0]["error_type"] == "not_found"
