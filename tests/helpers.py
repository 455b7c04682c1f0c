"""Test data shared by several test modules (not fixtures: plain constants and pure builders).

Seed 001 (plans-import) gives one example request body; the plans tests check it both ways: as a
plan file parsed by the transform (tests/transforms/test_plans.py) and as the body the operator sends
to the sandbox (tests/operators/test_plans_import.py); the sandbox's own tests post it directly
(tests/sandbox/test_sandbox_plans.py). All use the constants below, so they test
the same example.
"""

from __future__ import annotations

from pathlib import Path

from calltouch_metrika.transforms.plans import PLAN_COLUMNS

#: A plan file's header line.
PLAN_HEADER = ",".join(PLAN_COLUMNS)

#: Seed 001's example body, written as plan file rows (file rows 2-4).
SEED_PLAN_ROWS = [
    "2021-04-01,2021-04-02,yandex,cpc,april,sale,распродажа,Лиды,Уникальные лиды,100",
    "2021-04-01,2021-04-20,google,cpc,,,,Сделки и ROI,Выручка,23423",
    "2021-04-01,2021-04-20,,cpc,,,,Пользовательские,Название столбца,22",
]

#: Seed 001's example request body (``items``), verbatim.
SEED_BODY_ITEMS = [
    {
        "dateFrom": "01-04-2021",
        "dateTo": "02-04-2021",
        "source": "yandex",
        "medium": "cpc",
        "campaign": "april",
        "content": "sale",
        "keyword": "распродажа",
        "metric": {"type": "Лиды", "name": "Уникальные лиды", "value": 100},
    },
    {
        "dateFrom": "01-04-2021",
        "dateTo": "20-04-2021",
        "source": "google",
        "medium": "cpc",
        "metric": {"type": "Сделки и ROI", "name": "Выручка", "value": 23423},
    },
    {
        "dateFrom": "01-04-2021",
        "dateTo": "20-04-2021",
        "medium": "cpc",
        "metric": {"type": "Пользовательские", "name": "Название столбца", "value": 22},
    },
]


def plan_csv(*rows: str, header: str = PLAN_HEADER) -> str:
    """A plan file's text: the header, then ``rows``, one per line."""
    return "\n".join([header, *rows]) + "\n"


def write_plan(path: Path, rows: list[str]) -> Path:
    """Write a plan file with the standard header and ``rows``; return its path."""
    path.write_text(plan_csv(*rows), encoding="utf-8")
    return path
