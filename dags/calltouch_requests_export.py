"""Calltouch requests (leads, «заявки») journal -> a daily Parquet dataset, published as an Asset.

One DAG ``calltouch_requests_export__<pipeline>`` per pipeline of ``include/config/pipelines.yaml``
that sets ``requests_export: {enabled: true}``. Each run extracts one local day of the site's
requests journal (seed 004; every filter and ``with*`` flag comes from ``requests_export.params``)
and writes::

    {storage_root}/calltouch/requests/site={site_id}/date={YYYY-MM-DD}/requests.parquet

A successful extract records an event on the Asset ``calltouch_requests__<pipeline>`` whose URI is
the site's dataset directory, so downstream DAGs can be scheduled on it (see
``example_requests_consumer.py``).

Schedule: one run per local day of the pipeline's time zone
(:class:`~calltouch_metrika.timetables.LocalDayTimetable`): the run for day D has the data interval
[D 00:00, D+1 00:00) of the site's clock and starts at the time of day of ``requests_export.schedule``
(else the pipeline's ``schedule``, a daily ``"M H * * *"``) on D+1; ``catchup=True`` backfills every
day since ``start_date``. Run ids name the day (``scheduled__2026-11-29``).

Parsing reads the config only: no API call, no pandas.
"""

from __future__ import annotations

from airflow.sdk import DAG

from calltouch_metrika.config import Pipeline, cron_time_of_day
from calltouch_metrika.dag_factory import (
    build_each,
    buildable_pipelines,
    local_midnight,
    pipeline_default_args,
    pool_kwargs,
    requests_asset,
    requests_export_pipelines,
)
from calltouch_metrika.operators.calltouch import CalltouchExtractOperator
from calltouch_metrika.timetables import LocalDayTimetable

DAG_ID_PREFIX = "calltouch_requests_export__"


def build_dag(pipeline: Pipeline) -> DAG:
    """The requests export DAG of one pipeline (``requests_export.enabled`` must be true)."""
    export = pipeline.requests_export
    if export is None or not export.enabled:
        raise ValueError(f"pipeline {pipeline.name!r}: requests_export is not enabled")
    asset = requests_asset(pipeline)
    with DAG(
        dag_id=f"{DAG_ID_PREFIX}{pipeline.name}",
        description=f"Calltouch requests journal of site {pipeline.site_id} -> Parquet, one file per local day",
        schedule=LocalDayTimetable(
            at=cron_time_of_day(export.schedule or pipeline.schedule), timezone=pipeline.timezone
        ),
        start_date=local_midnight(pipeline.start_date, pipeline.timezone),
        catchup=True,
        max_active_runs=pipeline.max_active_runs,
        default_args=pipeline_default_args(pipeline),
        # The pipeline's own tags (team, environment...), minus "metrika": this DAG never talks to it.
        tags=list(
            dict.fromkeys(["calltouch", "requests", *(t for t in pipeline.dag_tags if t != "metrika")])
        ),
        doc_md=__doc__,
    ) as dag:
        CalltouchExtractOperator(
            task_id="extract_requests",
            kind="requests",
            calltouch_conn_id=pipeline.calltouch_conn_id,
            site_id=pipeline.site_id,
            api_params=dict(export.params),
            storage_root=pipeline.storage_root,
            timezone=pipeline.timezone,
            outlets=[asset],
            **pool_kwargs(pipeline),
            doc_md=f"Writes one local day of requests to `{asset.uri}/date=YYYY-MM-DD/requests.parquet`; "
            f"success records an event on the Asset `{asset.name}`.",
        )
    return dag


globals().update(build_each(requests_export_pipelines(buildable_pipelines()), build_dag))
