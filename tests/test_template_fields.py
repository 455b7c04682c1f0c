"""Every operator and sensor of ours lets a user template its connection id (and renders it).

A DAG author picks the connection per run or per environment (``"{{ var.value.ct_conn }}"``,
``"{{ params.conn }}"``); the conn id must therefore be in ``template_fields`` and be rendered before
``execute`` builds a hook.
"""

from __future__ import annotations

from typing import Any

import pytest

from calltouch_metrika.operators.calltouch import CalltouchExtractOperator
from calltouch_metrika.operators.calltouch_plans import PlansImportOperator
from calltouch_metrika.operators.metrika import MetrikaUploadCallsOperator
from calltouch_metrika.sensors.calltouch import PlansImportStatusSensor
from calltouch_metrika.sensors.metrika import UploadStatusSensor

CASES: list[tuple[type, str, dict[str, Any]]] = [
    (CalltouchExtractOperator, "calltouch_conn_id", {"site_id": 10001, "storage_root": "/tmp/x"}),
    (PlansImportOperator, "calltouch_conn_id", {"plans_file": "p.csv"}),
    (
        MetrikaUploadCallsOperator,
        "metrika_conn_id",
        {"pipeline": "p", "extract": {}, "counter_id": 20001, "storage_root": "/tmp/x"},
    ),
    (UploadStatusSensor, "metrika_conn_id", {"counter_id": 20001, "upload": None}),
    (PlansImportStatusSensor, "calltouch_conn_id", {"imports": []}),
]


@pytest.mark.parametrize(("cls", "field", "kwargs"), CASES, ids=[c[0].__name__ for c in CASES])
def test_conn_id_is_templated_and_rendered(cls: type, field: str, kwargs: dict[str, Any]) -> None:
    import jinja2

    assert field in cls.template_fields
    task = cls(task_id="t", **{field: "{{ params.conn }}"}, **kwargs)
    task.render_template_fields({"params": {"conn": "sandbox_ct"}}, jinja_env=jinja2.Environment())
    assert getattr(task, field) == "sandbox_ct"
