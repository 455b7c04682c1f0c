"""Example: a downstream DAG scheduled on the Calltouch requests dataset (Airflow Assets).

``calltouch_requests_export__<pipeline>`` records an event on the Asset
``calltouch_requests__<pipeline>`` each time it writes a day of requests. This DAG is scheduled on
those Assets (any of them), so Airflow runs it after every successful export, backfills included.

How to read the dataset, as the task below does:

* from the triggering event: the producing task's XCom (``{"path", "paths", "rows", "date_from",
  ...}``, pulled with the event's ``source_dag_id`` / ``source_run_id`` / ``source_task_id``) names
  the Parquet file(s) just written;
* without an event (a manual run): the newest ``date=YYYY-MM-DD`` partition under the Asset's URI;
* a whole site at once: ``pyarrow.dataset.dataset(uri, format="parquet", partitioning="hive")``
  gives a ``date`` partition column next to the file's columns (``request_id``, ``created_at``,
  ``subject``, ``tag_names``, ``session``, ...; see ``calltouch_metrika.transforms.requests``).

Copy it and replace the summary with your own load (CRM join, warehouse COPY, ...). Parsing this
file reads the config only: no pandas, no pyarrow, no API call.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import DAG, AssetAny, ObjectStoragePath, get_current_context, task

from calltouch_metrika.dag_factory import (
    buildable_pipelines,
    default_args,
    requests_asset,
    requests_export_pipelines,
)

log = logging.getLogger(__name__)

DAG_ID = "example_requests_consumer"


def newest_partition(asset_uri: str) -> ObjectStoragePath | None:
    """The newest ``date=*/requests.parquet`` file under a requests Asset's URI (None if there is none)."""
    directory = ObjectStoragePath(asset_uri)
    if not directory.exists():
        return None
    files = sorted(directory.glob("date=*/requests.parquet"), key=lambda p: p.parent.name)
    return files[-1] if files else None


def summarise(paths: list[str]) -> dict[str, Any]:
    """Read the given requests Parquet files and return a small summary (rows, subjects, tags, period)."""
    import pyarrow.parquet as pq  # heavy: imported when the task runs, not when the DAG is parsed

    rows = 0
    subjects: Counter[str] = Counter()
    tags: Counter[str] = Counter()
    first: str | None = None
    last: str | None = None
    for path in paths:
        with ObjectStoragePath(path).open("rb") as fh:
            table = pq.read_table(fh, columns=["request_id", "created_at", "subject", "tag_names"])
        rows += table.num_rows
        subjects.update(s for s in table.column("subject").to_pylist() if s)
        tags.update(t for names in table.column("tag_names").to_pylist() for t in names or ())
        stamps = [ts.isoformat() for ts in table.column("created_at").to_pylist() if ts is not None]
        if stamps:
            first = min([first, *stamps]) if first else min(stamps)
            last = max([last, *stamps]) if last else max(stamps)
    return {
        "files": paths,
        "rows": rows,
        "subjects": dict(subjects.most_common(10)),
        "tags": dict(tags.most_common(10)),
        "first_created_at": first,
        "last_created_at": last,
    }


# The same Assets the requests export DAGs update (both build them with dag_factory.requests_asset).
_PIPELINES = requests_export_pipelines(buildable_pipelines())
_ASSETS = [requests_asset(p) for p in _PIPELINES]

if _ASSETS:
    with DAG(
        dag_id=DAG_ID,
        description="Example consumer of the Calltouch requests dataset (scheduled on its Assets)",
        schedule=AssetAny(*_ASSETS),
        start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
        catchup=False,
        default_args=default_args(owner=_PIPELINES[0].owner, retries=1, retry_delay=timedelta(minutes=1)),
        tags=["calltouch", "requests", "example"],
        doc_md=__doc__,
    ) as dag:

        @task(multiple_outputs=False, inlets=_ASSETS)
        def summarise_requests() -> dict[str, Any]:
            """Summarise the requests files that triggered this run (or the newest ones, if run by hand)."""
            context = get_current_context()
            ti = context["ti"]
            paths: list[str] = []
            events = context.get("triggering_asset_events") or {}
            for asset_events in events.values():
                for event in asset_events:
                    produced: dict[str, Any] = dict(event.extra or {})
                    if not produced.get("path") and event.source_dag_id and event.source_run_id:
                        produced = (
                            ti.xcom_pull(
                                dag_id=event.source_dag_id,
                                run_id=event.source_run_id,
                                task_ids=event.source_task_id,
                            )
                            or {}
                        )
                    # One file per local day: "paths" lists them all, "path" is the first.
                    for path in produced.get("paths") or [produced.get("path")]:
                        if path and str(path) not in paths:
                            paths.append(str(path))
            if not paths:
                log.info("No triggering asset event (manual run): reading the newest partition of each site")
                paths = [str(p) for a in _ASSETS if (p := newest_partition(a.uri)) is not None]
            summary = summarise(paths)
            log.info(
                "%d request(s) in %d file(s); subjects %s; tags %s",
                summary["rows"],
                len(paths),
                summary["subjects"],
                summary["tags"],
            )
            return summary

        summarise_requests()
