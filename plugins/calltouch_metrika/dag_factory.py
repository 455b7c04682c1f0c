"""Wiring the DAG files share: local start dates, ``default_args``, pools, and the requests Asset.

The DAG files in ``dags/`` stay thin (docs/design.md): they read the config and wire operators with
these helpers, so a change here (the retry delay, how an Asset URI is built) reaches every DAG at once.
Parse-time cheap on purpose: no pandas/pyarrow, no API call, only what the DAG files import anyway.
This module is not a DAG file: it lives in the package so that a DAG file never imports another one.
"""

from __future__ import annotations

import os
import urllib.parse
import warnings
from collections.abc import Callable, Iterable
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pendulum
from airflow.sdk import Asset

from calltouch_metrika.constants import ACCOUNT_DAG_PREFIX, account_dag_id
from calltouch_metrika.storage import root_path

if TYPE_CHECKING:
    from airflow.sdk import DAG

    from calltouch_metrika.config import ConfigReport, Pipeline

__all__ = [
    "ACCOUNT_DAG_PREFIX",
    "CALLS_ASSET_PREFIX",
    "LINKAGE_ASSET_PREFIX",
    "REQUESTS_ASSET_PREFIX",
    "RETRY_DELAY",
    "account_dag_id",
    "account_groups",
    "account_sites",
    "build_each",
    "buildable_pipelines",
    "calls_asset",
    "config_report",
    "default_args",
    "extract_pool_kwargs",
    "linkage_asset",
    "local_midnight",
    "notify_callbacks",
    "pipeline_dag_errors",
    "pipeline_default_args",
    "pool_kwargs",
    "raise_config_errors",
    "requests_asset",
    "requests_export_pipelines",
]

#: Wait before a failed task's retry (grows when ``retry_exponential_backoff`` is set).
RETRY_DELAY = timedelta(minutes=5)
#: ``calltouch_requests__<pipeline>``: the Asset a pipeline's requests export updates.
REQUESTS_ASSET_PREFIX = "calltouch_requests__"


#: ``calltouch_calls__<pipeline>``: the Asset a pipeline's calls extract updates.
CALLS_ASSET_PREFIX = "calltouch_calls__"
#: ``metrika_linkage__<pipeline>``: the Asset a pipeline's linkage report updates.
LINKAGE_ASSET_PREFIX = "metrika_linkage__"


def local_midnight(day: date, timezone: str) -> datetime:
    """00:00 of ``day`` on the given IANA time zone's clock (a DAG's ``start_date``)."""
    return datetime(day.year, day.month, day.day, tzinfo=pendulum.timezone(timezone))


def default_args(
    *, owner: str, retries: int, retry_delay: timedelta = RETRY_DELAY, **extra: Any
) -> dict[str, Any]:
    """A DAG's ``default_args``: owner, retries, retry delay, plus any ``extra`` task argument."""
    return {"owner": owner, "retries": retries, "retry_delay": retry_delay, **extra}


def pipeline_default_args(pipeline: Pipeline, **extra: Any) -> dict[str, Any]:
    """``default_args`` from a pipeline's ``owner`` and ``retries``, and its ``notify`` callbacks."""
    return default_args(owner=pipeline.owner, retries=pipeline.retries, **notify_callbacks(pipeline), **extra)


def notify_callbacks(pipeline: Pipeline) -> dict[str, Any]:
    """``on_failure_callback`` / ``on_success_callback`` sending the pipeline's ``notify`` e-mails
    (:class:`~calltouch_metrika.notifications.PipelineNotifier`); ``{}`` without ``notify``."""
    if pipeline.notify is None:
        return {}
    from calltouch_metrika.notifications import PipelineNotifier

    notify = pipeline.notify

    def notifier(callback: str) -> PipelineNotifier:
        return PipelineNotifier(
            pipeline=pipeline.name,
            timezone=pipeline.timezone,
            to=notify.to,
            smtp_conn_id=notify.conn_id,
            from_email=notify.from_email,
            events=notify.events,
            rejects_over_percent=notify.rejects_over_percent,
            callback=callback,  # type: ignore[arg-type]
        )

    callbacks: dict[str, Any] = {"on_failure_callback": [notifier("failure")]}
    if {"linkage_failure", "rejects_over"} & set(notify.events):
        callbacks["on_success_callback"] = [notifier("success")]
    return callbacks


def pool_kwargs(pipeline: Pipeline) -> dict[str, Any]:
    """``{"pool": ...}`` for a Calltouch task when the pipeline names a pool, else ``{}`` (Airflow's default)."""
    return {"pool": pipeline.pool} if pipeline.pool else {}


def extract_pool_kwargs(pipeline: Pipeline) -> dict[str, Any]:
    """The pool of a calls DAG's ``extract`` task: :func:`pool_kwargs`, except for a pipeline with an
    ``account``, whose extract normally only reads the account extract's summary (no Calltouch request;
    a pool slot would only delay it) and, when none comes, is paced by the rate limiter alone."""
    return {} if pipeline.account else pool_kwargs(pipeline)


def account_groups(pipelines: Iterable[Pipeline]) -> dict[str, list[Pipeline]]:
    """``{account: [its pipelines, config order]}`` of the pipelines with an ``account``, in config order.

    The config check (``config_file.account_conflicts``) has already left out pipelines whose
    connection, time zone or schedule differs from their account's first one.
    """
    groups: dict[str, list[Pipeline]] = {}
    for p in pipelines:
        if p.account:
            groups.setdefault(p.account, []).append(p)
    return groups


def account_sites(members: Iterable[Pipeline]) -> list[dict[str, Any]]:
    """The ``sites`` argument of the account extract: each pipeline's own extract settings (primitives)."""
    return [
        {
            "pipeline": p.name,
            "site_id": p.site_id,
            "filters": dict(p.filters),
            "storage_root": p.storage_root,
            "hash_phone_numbers": p.hash_phone_numbers,
            "settle_days": p.settle_days,
            "lookback_days": p.lookback_days,
            "start_date": p.start_date.isoformat(),
        }
        for p in members
    ]


def requests_export_pipelines(pipelines: Iterable[Pipeline]) -> list[Pipeline]:
    """The pipelines with ``requests_export: {enabled: true}``, in config order."""
    return [p for p in pipelines if p.requests_export is not None and p.requests_export.enabled]


def requests_asset(pipeline: Pipeline) -> Asset:
    """The Asset a pipeline's requests export updates, and the example consumer is scheduled on.

    The URI is the site's dataset directory under the storage root, without any connection id
    (``s3://conn@bucket/...`` -> ``s3://bucket/...``): an Asset URI names data, not credentials.
    """
    directory = root_path(pipeline.storage_root) / "calltouch" / "requests" / f"site={pipeline.site_id}"
    return Asset(
        name=f"{REQUESTS_ASSET_PREFIX}{pipeline.name}",
        uri=_asset_uri(directory),
        group="calltouch",
        extra={"site_id": pipeline.site_id, "format": "parquet", "partitioning": "date=YYYY-MM-DD"},
    )


def pipeline_dag_errors(pipeline: Pipeline, *, file: str = "pipelines.yaml") -> list[str]:
    """What would stop Airflow from building this pipeline's DAGs, one message per problem, else ``[]``.

    Builds the DAG-level objects of its calls (and requests) DAG without tasks, step by step, so a
    value that passed validation but that Airflow refuses (a tag, a date its clock cannot hold, a
    time zone) names its key: ``pipelines.yaml: pipeline 'shop': key 'dag_tags': ValueError: ...``.
    """
    from airflow.sdk import DAG

    from calltouch_metrika.config import cron_time_of_day
    from calltouch_metrika.timetables import LocalDayTimetable

    errors: list[str] = []

    def step(key: str, fn: Callable[[], object]) -> None:
        try:
            fn()
        except Exception as exc:  # any failure is reported; the other pipelines still load
            errors.append(f"{file}: pipeline {pipeline.name!r}: key {key!r}: {type(exc).__name__}: {exc}")

    def start() -> object:
        return local_midnight(pipeline.start_date, pipeline.timezone).astimezone(pendulum.UTC)

    step("schedule", lambda: LocalDayTimetable(at=pipeline.schedule_at, timezone=pipeline.timezone))
    step("start_date", start)
    step(
        "dag_tags",
        lambda: DAG(dag_id=pipeline.dag_id, schedule=None, tags=list(pipeline.dag_tags), auto_register=False),
    )
    step("notify" if pipeline.notify is not None else "owner", lambda: pipeline_default_args(pipeline))
    export = pipeline.requests_export
    if export is not None and export.enabled:
        step("requests_export", lambda: cron_time_of_day(export.schedule or pipeline.schedule))
        step("storage_root", lambda: requests_asset(pipeline))
    if not errors:
        step(
            "(pipeline)",
            lambda: DAG(
                dag_id=pipeline.dag_id,
                schedule=LocalDayTimetable(at=pipeline.schedule_at, timezone=pipeline.timezone),
                start_date=local_midnight(pipeline.start_date, pipeline.timezone),
                max_active_runs=pipeline.max_active_runs,
                default_args=pipeline_default_args(pipeline),
                tags=list(pipeline.dag_tags),
                auto_register=False,
            ),
        )
    return errors


def buildable_pipelines(path: str | None = None) -> list[Pipeline]:
    """The pipelines every DAG file builds: valid (:func:`~calltouch_metrika.config.read_config`) and
    with no :func:`pipeline_dag_errors`. The others are shown by ``dags/calltouch_config_errors.py``."""
    from calltouch_metrika.config import read_config

    return config_report(read_config(path)).pipelines


def config_report(report: ConfigReport) -> ConfigReport:
    """``report`` with each valid pipeline whose DAGs cannot be built moved to its errors."""
    keep: list[Pipeline] = []
    for pipeline in report.pipelines:
        problems = pipeline_dag_errors(pipeline, file=report.file)
        if problems:
            report.errors.extend(problems)
            report.broken.append(pipeline.name)
        else:
            keep.append(pipeline)
    report.pipelines = keep
    return report


def build_each(
    pipelines: Iterable[Pipeline], build: Callable[[Pipeline], DAG], *, file: str = "pipelines.yaml"
) -> dict[str, DAG]:
    """``{dag_id: dag}`` of ``build(pipeline)`` for each pipeline; one that raises is left out.

    Isolation (issue 13 §1): a pipeline whose DAG construction raises hides only itself; the failure
    is emitted as a :class:`~calltouch_metrika.config.ConfigWarning` naming the pipeline, and any
    half-built DAG Airflow auto-registered for it is dropped.
    """
    from airflow.sdk.definitions._internal.contextmanager import DagContext

    from calltouch_metrika.config import ConfigWarning

    dags: dict[str, DAG] = {}
    for pipeline in pipelines:
        before = set(DagContext.autoregistered_dags)
        try:
            dag = build(pipeline)
        except Exception as exc:  # one pipeline's failure must not take the file's other DAGs down
            for entry in set(DagContext.autoregistered_dags) - before:
                DagContext.autoregistered_dags.discard(entry)
            warnings.warn(
                f"{file}: pipeline {pipeline.name!r}: its DAG could not be built and is not loaded: "
                f"{type(exc).__name__}: {exc}",
                ConfigWarning,
                stacklevel=2,
            )
            continue
        dags[dag.dag_id] = dag
    return dags


def _asset_uri(directory: Any) -> str:
    """A dataset directory as an Asset URI, without any connection id (``s3://conn@b/..`` -> ``s3://b/..``)."""
    parts = urllib.parse.urlsplit(str(directory))
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def _dataset_asset(pipeline: Pipeline, prefix: str, dataset: str, directory: Any, **extra: Any) -> Asset:
    """A pipeline's dataset as an Asset named ``{prefix}{pipeline}``, URI ``calltouch-metrika://{pipeline}/{dataset}``.

    The URI names the pipeline's dataset, not a location: moving ``storage_root`` keeps the Asset (its
    events and consumers); the location is in ``extra["path"]`` (without any connection id).
    """
    return Asset(
        name=f"{prefix}{pipeline.name}",
        uri=f"calltouch-metrika://{pipeline.name}/{dataset}",
        group="calltouch-metrika",
        extra={"path": _asset_uri(directory), "format": "parquet", **extra},
    )


def calls_asset(pipeline: Pipeline) -> Asset:
    """The Asset a pipeline's calls extract updates: the site's calls (``storage.calls_path``, a folder per day)."""
    directory = root_path(pipeline.storage_root) / "calltouch" / "calls" / f"site={pipeline.site_id}"
    return _dataset_asset(
        pipeline,
        CALLS_ASSET_PREFIX,
        "calls",
        directory,
        site_id=pipeline.site_id,
        partitioning="date=YYYY-MM-DD",
    )


def linkage_asset(pipeline: Pipeline) -> Asset:
    """The Asset a pipeline's linkage report updates (``linkage.dataset``: one file per upload and day)."""
    directory = root_path(pipeline.storage_root) / "metrika" / "linkage" / f"counter={pipeline.counter_id}"
    return _dataset_asset(
        pipeline,
        LINKAGE_ASSET_PREFIX,
        "linkage",
        directory,
        counter_id=pipeline.counter_id,
        partitioning="date=YYYY-MM-DD/{pipeline}.upload-{id}.parquet",
    )


def raise_config_errors(path: str | os.PathLike[str] | None = None) -> ConfigReport:
    """Emit each warning as a :class:`ConfigWarning`, then raise one :class:`ConfigError` listing every error.

    Called by ``dags/calltouch_config_errors.py``: Airflow shows the exception as that file's import
    error in the UI and the warnings as its DAG warnings.

    :raises ConfigError: the file has errors; the message lists them all.
    """
    from calltouch_metrika.config import ConfigError, ConfigWarning, read_config

    report = config_report(read_config(path))
    for message in report.warnings:
        warnings.warn(message, ConfigWarning, stacklevel=2)
    if report.errors:
        loaded = ", ".join(p.name for p in report.pipelines) or "none"
        header = f"{len(report.errors)} error(s) in {report.file}; "
        if report.broken:
            header += f"pipeline(s) not loaded: {', '.join(report.broken)}; "
        header += f"pipeline(s) loaded: {loaded}"
        raise ConfigError(header + "\n" + "\n".join(report.errors))
    return report
