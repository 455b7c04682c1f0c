"""Plan metrics into Calltouch: DAG ``calltouch_plans_import`` (seed 001, plans-import).

For every pipeline in ``include/config/pipelines.yaml`` with a ``plans_file`` (a CSV under
``include/plans/``), one task group ``<pipeline name>`` runs ``import_plans >> wait_for_import``:
the file is validated (every problem reported at once), sent in batches of at most 100 items, and
each import is awaited (deferred) until Calltouch reports ``success``.

Daily, but only changed content is sent: each batch's content hash is recorded in the plans ledger
on storage, so an unchanged file sends nothing. Manual runs take Params ``file`` (import only that
file), ``dry_run`` (validate and log, send nothing) and ``force`` (send even if already imported).

This file only reads the configuration and wires operators: no API calls, no pandas at parse time.
"""

from __future__ import annotations

from datetime import date

from airflow.sdk import DAG, CronTriggerTimetable, Param, TaskGroup

from calltouch_metrika.dag_factory import buildable_pipelines, default_args, local_midnight, pool_kwargs
from calltouch_metrika.operators.calltouch_plans import PlansImportOperator
from calltouch_metrika.sensors.calltouch import PlansImportStatusSensor

DAG_ID = "calltouch_plans_import"
SCHEDULE = "0 6 * * *"
TIMEZONE = "Europe/Moscow"

DOC_MD = """
### Plan metrics → Calltouch

Every day at 06:00 ({timezone}) each configured plan file is checked and, if its content changed,
imported into Calltouch's statistics (API `plans-import`, at most 100 rows per request).

| pipeline | site | plan file |
|---|---|---|
{table}

Per pipeline: **import_plans** validates the whole file first (`file:row: field: message` for every
problem, nothing is sent while any remains), skips batches already imported (plans ledger on storage),
sends the rest and returns their import ids; **wait_for_import** waits (deferred) until each import is
`success`, fails naming the import ids and file rows on `error` or when still `in progress...` at the
timeout.

Manual run Params: **file** (only this plan file; empty = all), **dry_run** (validate and show what
would be sent), **force** (send again even if already imported).
"""

_with_plans = [p for p in buildable_pipelines() if p.plans_file]
_files = sorted({str(p.plans_file) for p in _with_plans})
_start = min((p.start_date for p in _with_plans), default=None)

with DAG(
    dag_id=DAG_ID,
    description="Validated plan files -> Calltouch plans-import, awaited until success",
    schedule=CronTriggerTimetable(SCHEDULE, timezone=TIMEZONE),
    start_date=local_midnight(_start or date(2026, 1, 1), TIMEZONE),
    catchup=False,
    max_active_runs=1,  # two runs must not send the same batch at the same time
    default_args=default_args(owner="marketing-data", retries=2),
    params={
        "file": Param(
            "",
            type="string",
            enum=["", *_files],
            description="Import only this plan file (a configured plans_file); empty: every file.",
        ),
        "dry_run": Param(False, type="boolean", description="Validate and log the batches; send nothing."),
        "force": Param(False, type="boolean", description="Send every batch, even those already imported."),
    },
    tags=["calltouch", "plans"],
    doc_md=DOC_MD.format(
        timezone=TIMEZONE,
        table="\n".join(f"| {p.name} | {p.site_id} | `{p.plans_file}` |" for p in _with_plans)
        or "| (none: set `plans_file` on a pipeline) | | |",
    ),
) as dag:
    for _p in _with_plans:
        with TaskGroup(group_id=_p.name, tooltip=f"site {_p.site_id}: {_p.plans_file}"):
            _import = PlansImportOperator(
                task_id="import_plans",
                plans_file=str(_p.plans_file),
                calltouch_conn_id=_p.calltouch_conn_id,
                site_id=_p.site_id,
                storage_root=_p.storage_root,
                dry_run="{{ params.dry_run }}",
                force="{{ params.force }}",
                only_file="{{ params.file }}",
                retries=_p.retries,
                **pool_kwargs(_p),
            )
            PlansImportStatusSensor(
                task_id="wait_for_import",
                imports=_import.output,
                calltouch_conn_id=_p.calltouch_conn_id,
                site_id=_p.site_id,
                poke_interval=_p.status_poll_seconds,
                retries=_p.retries,
            )
    if not _with_plans:
        from airflow.providers.standard.operators.empty import EmptyOperator

        EmptyOperator(task_id="no_plan_files", doc_md="No pipeline has a `plans_file`; nothing to import.")
