"""Wiring the DAG files share: local start dates, ``default_args``, pools, and the requests Asset.

The DAG files in ``dags/`` stay thin (docs/design.md): they read the config and wire operators with
these helpers, so a change here (the retry delay, how an Asset URI is built) reaches every DAG at once.
Parse-time cheap on purpose: no pandas/pyarrow, no API call, only what the DAG files import anyway.
This module is not a DAG file: it lives in the package so that a DAG file never imports another one.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pendulum
from airflow.sdk import Asset

from calltouch_metrika.storage import root_path

if TYPE_CHECKING:
    from calltouch_metrika.config import Pipeline

__all__ = [
    "CALLS_ASSET_PREFIX",
    "LINKAGE_ASSET_PREFIX",
    "REQUESTS_ASSET_PREFIX",
    "RETRY_DELAY",
    "calls_asset",
    "default_args",
    "linkage_asset",
    "local_midnight",
    "notify_callbacks",
    "pipeline_default_args",
    "pool_kwargs",
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
