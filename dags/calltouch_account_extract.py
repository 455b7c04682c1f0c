"""Calltouch account extracts: one DAG per ``account`` of ``include/config/pipelines.yaml``.

``calltouch_account_extract__<account>`` runs one task per local day (its data interval
``[D 00:00, D+1 00:00)``, :class:`LocalDayTimetable`, the account's time zone and schedule) that fetches
the calls of every site of the account's pipelines concurrently under the Calltouch rate limit and
writes each site's files and each pipeline's summary. Each pipeline keeps its own calls DAG (pause
switch, backfills, uploads): its ``extract`` task takes the summary instead of calling Calltouch.

Why: with one extract task per site and day, task start-up (~1.7 s) dwarfs a small site's one request,
so an agency's many sites use a fraction of the 5 requests/s Calltouch allows (issue 15; README
"Benchmarks"). Pipelines without ``account`` are not affected.

This file only reads the configuration and wires operators: no API calls, no pandas at parse time.
"""

from __future__ import annotations

from airflow.sdk import DAG

from calltouch_metrika.config import Pipeline
from calltouch_metrika.dag_factory import (
    account_dag_id,
    account_groups,
    account_sites,
    build_each,
    buildable_pipelines,
    default_args,
    local_midnight,
    notify_callbacks,
    pool_kwargs,
)
from calltouch_metrika.operators.calltouch_account import CalltouchAccountExtractOperator
from calltouch_metrika.timetables import LocalDayTimetable

DOC_MD = """
### Calltouch account extract ({account})

Each run is one **local calendar day** D of {timezone} (starts at {at} on D+1). One task fetches the
day's calls of every site of account **{account}** (connection `{conn_id}`), all at once under the
Calltouch rate limit, and writes each site's files as its pipeline's own extract would:

{members}

Each pipeline's DAG then takes its site's files in its `extract` task (no Calltouch request) and
uploads as usual. To refresh a day from Calltouch, clear this DAG's run of the day, then the
pipelines' runs. A site that fails here fails this task after every other site is written; its
pipeline fetches it itself after waiting.
"""


def build_dag(members: list[Pipeline]) -> DAG:
    """The account extract DAG of the pipelines of one account (config order; the first sets the owner)."""
    first = members[0]
    account = str(first.account)
    with DAG(
        dag_id=account_dag_id(account),
        description=f"Calltouch account {account}: calls of {len(members)} site(s) per local day",
        schedule=LocalDayTimetable(at=first.schedule_at, timezone=first.timezone),
        start_date=local_midnight(min(p.start_date for p in members), first.timezone),
        catchup=True,
        max_active_runs=max(p.max_active_runs for p in members),
        default_args=default_args(
            owner=first.owner,
            retries=max(p.retries for p in members),
            retry_exponential_backoff=True,
            **notify_callbacks(first),
        ),
        tags=["calltouch", "account"],
        doc_md=DOC_MD.format(
            account=account,
            timezone=first.timezone,
            at=first.schedule_at,
            conn_id=first.calltouch_conn_id,
            members="\n".join(f"- `{p.dag_id}`: site {p.site_id} -> counter {p.counter_id}" for p in members),
        ),
    ) as dag:
        CalltouchAccountExtractOperator(
            task_id="extract",
            account=account,
            calltouch_conn_id=first.calltouch_conn_id,
            timezone=first.timezone,
            sites=account_sites(members),
            **pool_kwargs(first),
        )
    return dag


_groups = account_groups(buildable_pipelines())
globals().update(
    build_each(
        [members[0] for members in _groups.values()],
        lambda first: build_dag(_groups[str(first.account)]),
    )
)
