"""Calltouch calls -> Yandex Metrika offline calls: one DAG per pipeline in ``include/config/pipelines.yaml``.

Each DAG, ``calltouch_calls_to_metrika__<name>``, runs ``extract >> upload >> wait`` once per local day
(its data interval ``[D 00:00, D+1 00:00)`` in the pipeline's time zone: :class:`LocalDayTimetable`). Catchup is on, so backfills from the UI and
``airflow backfill create`` just work; re-running a day never uploads it twice.

This file only reads the configuration and wires operators: no API calls, no pandas at parse time.
Only valid pipelines are built: a broken one hides only itself, and ``calltouch_config_errors.py``
shows every config error as its import error.
"""

from __future__ import annotations

from airflow.sdk import DAG, Param

from calltouch_metrika.config import Pipeline
from calltouch_metrika.dag_factory import (
    build_each,
    buildable_pipelines,
    calls_asset,
    extract_pool_kwargs,
    linkage_asset,
    local_midnight,
    pipeline_default_args,
)
from calltouch_metrika.operators.calltouch import CalltouchExtractOperator
from calltouch_metrika.operators.metrika import MetrikaUploadCallsOperator
from calltouch_metrika.operators.report import LinkageReportOperator
from calltouch_metrika.sensors.metrika import UploadStatusSensor
from calltouch_metrika.timetables import LocalDayTimetable

DOC_MD = """
### Calltouch calls → Yandex Metrika ({name})

Each run is one **local calendar day** D of {timezone}: its data interval is `[D 00:00, D+1 00:00)`,
its run id `scheduled__D` / `backfill__D`, and it starts at {at} on D+1 (schedule `{schedule}`). It sends
that day's calls of Calltouch site **{site_id}** to Metrika counter **{counter_id}** as offline calls.

**Choosing the day by hand:** Trigger with *Logical date* = D 00:00 (UTC or {timezone}) to send day D;
the default *now* sends the last complete day; any other instant names no day and is refused.
A day that has not ended yet fails without uploading.
CLI: `airflow dags test {dag_id} 2026-11-29`; range: `airflow backfill create --dag-id {dag_id}
--from-date 2026-11-20 --to-date 2026-11-22` (days 20, 21, 22).

1. **extract** — the day's calls through the Calltouch API, written as Parquet to
   `{storage_root}/calltouch/calls/site={site_id}/date=YYYY-MM-DD/calls.parquet`.{account_note}
2. **upload** — the calls turned into Metrika's calls CSV (identifier `{identifier}` from `{field}`);
   calls that cannot be uploaded go to `metrika/rejects/…` with a reason. Only calls that counter
   {counter_id}'s call ledger does not hold yet are uploaded (one upload per day with new calls,
   comment `calltouch-metrika {name} site {site_id} <day> part <n>`), so retries, re-runs and other
   pipelines on the counter never send a call twice. The previous `lookback_days` days are re-read
   for late calls.
3. **wait** — waits (deferred) until Metrika reports `PROCESSED`; `LINKAGE_FAILURE` → **{on_linkage_failure}**.
4. **report** — the day's linkage report row (extracted, rejected by reason, uploaded, Metrika's
   quantities, linked share) under `metrika/linkage/…`; a teardown: it runs whatever happened
   upstream and never decides the run's state. Shown on the *Linkage report* page (Browse menu).

Trigger with **dry_run** to build and check the CSV without uploading; with **force_reupload**
to re-send the day's calls even if the ledger holds them (recorded as forced; Metrika's
deduplication of repeated calls is undocumented).
"""

ACCOUNT_NOTE = """
   Account **{account}**: DAG `calltouch_account_extract__{account}` fetches every site of the account in
   one task per day; this task takes its files (no Calltouch request), waiting for them (deferred) up to
   {wait:g} min, then fetches the site itself. Trigger with **refetch** to fetch the site here."""


def build_dag(pipeline: Pipeline) -> DAG:
    """The calls DAG of one pipeline."""
    with DAG(
        dag_id=pipeline.dag_id,
        description=f"Calltouch site {pipeline.site_id} calls -> Metrika counter {pipeline.counter_id}",
        schedule=LocalDayTimetable(at=pipeline.schedule_at, timezone=pipeline.timezone),
        start_date=local_midnight(pipeline.start_date, pipeline.timezone),
        catchup=True,
        max_active_runs=pipeline.max_active_runs,
        default_args=pipeline_default_args(pipeline, retry_exponential_backoff=True),
        params={
            "dry_run": Param(
                False, type="boolean", description="Build and validate the CSV; upload nothing."
            ),
            "force_reupload": Param(
                False, type="boolean", description="Upload again even if this day was already uploaded."
            ),
            "refetch": Param(
                False,
                type="boolean",
                description="With an account: fetch this site from Calltouch in this run instead of "
                "using the account extract's files.",
            ),
        },
        tags=list(pipeline.dag_tags),
        doc_md=DOC_MD.format(
            name=pipeline.name,
            schedule=pipeline.schedule,
            at=pipeline.schedule_at,
            dag_id=pipeline.dag_id,
            timezone=pipeline.timezone,
            site_id=pipeline.site_id,
            counter_id=pipeline.counter_id,
            storage_root=pipeline.storage_root,
            identifier=pipeline.identifier.type,
            field=pipeline.identifier.field,
            on_linkage_failure=pipeline.on_linkage_failure,
            account_note=ACCOUNT_NOTE.format(account=pipeline.account, wait=pipeline.account_wait_minutes)
            if pipeline.account
            else "",
        ),
    ) as dag:
        extract = CalltouchExtractOperator(
            task_id="extract",
            kind="calls",
            calltouch_conn_id=pipeline.calltouch_conn_id,
            site_id=pipeline.site_id,
            api_params=dict(pipeline.filters),
            storage_root=pipeline.storage_root,
            hash_phone_numbers=pipeline.hash_phone_numbers,
            timezone=pipeline.timezone,
            settle_days=pipeline.settle_days,
            lookback_days=pipeline.lookback_days,
            pipeline=pipeline.name,
            account=pipeline.account,
            account_start=pipeline.start_date.isoformat() if pipeline.account else None,
            account_wait=pipeline.account_wait_minutes * 60,
            account_poll_interval=max(2.0, min(pipeline.status_poll_seconds, 30.0)),
            outlets=[calls_asset(pipeline)],
            **extract_pool_kwargs(pipeline),
        )
        upload = MetrikaUploadCallsOperator(
            task_id="upload",
            pipeline=pipeline.name,
            extract=extract.output,
            metrika_conn_id=pipeline.metrika_conn_id,
            counter_id=pipeline.counter_id,
            timezone=pipeline.timezone,
            identifier=pipeline.identifier.type,
            identifier_field=pipeline.identifier.field or "yaClientId",
            price_mode=pipeline.price.mode,
            price=pipeline.price.value,
            currency=pipeline.price.currency,
            include_tags=pipeline.tags.enabled,
            new_goal_name=pipeline.new_goal_name,
            storage_root=pipeline.storage_root,
            dry_run="{{ params.dry_run }}",
            force_reupload="{{ params.force_reupload }}",
        )
        wait = UploadStatusSensor(
            task_id="wait",
            counter_id=pipeline.counter_id,
            upload=upload.output,
            metrika_conn_id=pipeline.metrika_conn_id,
            on_linkage_failure=pipeline.on_linkage_failure,
            poke_interval=pipeline.status_poll_seconds,
            timeout=pipeline.status_timeout_hours * 3600,
        )
        report = LinkageReportOperator(
            task_id="report",
            pipeline=pipeline.name,
            counter_id=pipeline.counter_id,
            storage_root=pipeline.storage_root,
            metrika_conn_id=pipeline.metrika_conn_id,
            outlets=[linkage_asset(pipeline)],
        ).as_teardown()
        extract >> upload >> wait >> report
    return dag


globals().update(build_each(buildable_pipelines(), build_dag))
