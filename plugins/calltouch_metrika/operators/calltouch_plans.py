"""PlansImportOperator: a validated plan file -> Calltouch ``plans-import/add`` in batches of 100.

Flow: read the file (local path, or any fsspec URL) -> validate every row
(:mod:`calltouch_metrika.transforms.plans`; every problem reported at once, before any API call)
-> batches of at most 100 items in file order -> for each batch, consult the plans ledger, then
send it -> XCom ``[{"import_log_id", "rows", "file", "sha256", "site_id", "ledger", "batch",
"reused"}]`` for :class:`~calltouch_metrika.sensors.calltouch.PlansImportStatusSensor`.

**Idempotency (the plans ledger).** Each batch is keyed by the SHA-256 of its canonical content
(items + site id, :func:`~calltouch_metrika.transforms.plans.batch_sha256`), stored at
``{root}/calltouch/plans_ledger/site={site_id}/{sha256}.json`` (:func:`calltouch_metrika.storage.plans_ledger_path`).
An entry has a ``state``:

* ``sent`` — written by this operator right after ``plans-import/add`` answered with an
  ``importLogId``. The next run does not blindly re-send it: it asks Calltouch for that import's
  status first. ``success`` -> the entry becomes ``succeeded`` and nothing is sent;
  ``in progress...`` -> nothing is sent and the existing id is handed to the sensor again
  (``"reused": true``); ``error`` (or an id Calltouch no longer knows) -> the batch is sent again.
* ``succeeded`` — written by the status sensor when Calltouch reports ``success`` (or by the
  check above). Such a batch is never sent again unless ``force=True``.

So an unchanged file sends nothing, a file with one changed row re-sends only the batches whose
content changed (rows after an inserted/deleted row shift, so their batches change too), and a
failed import is re-sent on the next run.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator, ObjectStoragePath
from airflow.sdk.exceptions import AirflowSkipException

from calltouch_metrika import storage
from calltouch_metrika._utils import as_bool
from calltouch_metrika.constants import LEDGER_SENT, LEDGER_SUCCEEDED, PLANS_IN_PROGRESS, PLANS_SUCCESS
from calltouch_metrika.exceptions import (
    MalformedResponseError,
    NotFoundError,
    PlanFileError,
    ValidationError,
)

if TYPE_CHECKING:
    from airflow.sdk import Context

    from calltouch_metrika.hooks.calltouch import CalltouchHook
    from calltouch_metrika.transforms.plans import PlanBatch

__all__ = [
    "PLANS_DIR_ENV",
    "PlansImportOperator",
    "plans_dir",
    "resolve_plans_file",
]

#: Overrides where plan files named without a directory are looked up (default ``<repo>/include/plans``).
PLANS_DIR_ENV = "CALLTOUCH_METRIKA_PLANS_DIR"


def plans_dir() -> Path:
    """Where bare plan file names live: ``$CALLTOUCH_METRIKA_PLANS_DIR``, else ``<repo>/include/plans``
    (``$AIRFLOW_HOME/calltouch_metrika/plans`` when installed: ``config.default_plans_dir``)."""
    from calltouch_metrika.config import default_plans_dir

    env = os.environ.get(PLANS_DIR_ENV)
    return Path(env).expanduser() if env else default_plans_dir()


def resolve_plans_file(plans_file: str) -> ObjectStoragePath:
    """A plan file name (under :func:`plans_dir`), an absolute/relative path, or an fsspec URL -> path."""
    text = str(plans_file).strip()
    if not text:
        raise PlanFileError(["plans_file: no plan file given"])
    if "://" in text:
        return ObjectStoragePath(text)
    p = Path(text).expanduser()
    if not p.is_absolute():
        p = plans_dir() / p
    return ObjectStoragePath(p.resolve().as_uri())


class PlansImportOperator(BaseOperator):
    """Validate a plan CSV and import it into Calltouch, at most 100 items per ``plans-import/add``.

    Every problem in the file is reported at once (``file:row: field: message``) before any API
    call; violations the API reports for ``items[n].field`` are mapped back to file rows the same
    way. Batches already imported (see the module doc: the plans ledger) are not sent again
    unless ``force``.

    :param plans_file: the plan file: a name under ``include/plans/`` (or ``$CALLTOUCH_METRIKA_PLANS_DIR``),
        a path, or an fsspec URL. Templated.
    :param calltouch_conn_id: the Calltouch connection. Templated.
    :param site_id: the Calltouch site (``SiteId``); default: the connection's extra ``site_id``. Templated.
    :param storage_root: where the plans ledger lives; default ``$CALLTOUCH_METRIKA_DATA`` or ``<repo>/data``.
        Templated.
    :param dry_run: validate and batch, log what would be sent, send nothing, write nothing. Templated
        (``"{{ params.dry_run }}"`` works).
    :param force: send every batch even if the ledger says it was imported. Templated.
    :param only_file: when set (e.g. ``"{{ params.file }}"``) and it is not this task's plan file
        name, the task is skipped; lets one manual run import a single file. Templated.
    :param batch_size: items per request, 1..100.
    :return: (XCom) one dict per batch awaiting a status: ``import_log_id``, ``rows`` (file lines),
        ``file``, ``sha256``, ``site_id``, ``ledger`` (entry path), ``batch`` (index), ``reused``.
        Empty when nothing was sent (dry run, or everything already imported).
    """

    template_fields: Sequence[str] = (
        "plans_file",
        "calltouch_conn_id",
        "site_id",
        "storage_root",
        "dry_run",
        "force",
        "only_file",
    )
    ui_color = "#fde9c9"

    def __init__(
        self,
        *,
        plans_file: str,
        calltouch_conn_id: str = "calltouch_default",
        site_id: int | str | None = None,
        storage_root: str | None = None,
        dry_run: bool | str = False,
        force: bool | str = False,
        only_file: str | None = None,
        batch_size: int = 100,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.plans_file = plans_file
        self.calltouch_conn_id = calltouch_conn_id
        self.site_id = site_id
        self.storage_root = storage_root
        self.dry_run = dry_run
        self.force = force
        self.only_file = only_file
        self.batch_size = batch_size

    def _hook(self, site_id: int | str | None) -> CalltouchHook:
        from calltouch_metrika.hooks.calltouch import CalltouchHook

        return CalltouchHook(self.calltouch_conn_id, site_id=site_id)

    def execute(self, context: Context) -> list[dict[str, Any]]:
        from calltouch_metrika.config import default_storage_root
        from calltouch_metrika.transforms.plans import make_batches, map_violations, read_plan_bytes

        path = resolve_plans_file(self.plans_file)
        name = path.name
        only = str(self.only_file or "").strip()
        if only and only not in {name, str(self.plans_file).strip()}:
            raise AirflowSkipException(f"this run imports only {only!r}; skipping {name!r}")
        dry_run, force = as_bool(self.dry_run, "dry_run"), as_bool(self.force, "force")

        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise PlanFileError([f"{name}: file: not found at {path}"]) from None
        rows = read_plan_bytes(data, file=name)  # raises PlanFileError with every problem
        batches = make_batches(rows, self.batch_size)
        self.log.info(
            "%s: %d valid row(s) -> %d batch(es) of at most %d",
            name,
            len(rows),
            len(batches),
            self.batch_size,
        )

        hook = self._hook(self.site_id)
        site_id = int(self.site_id) if self.site_id not in (None, "") else int(hook.site_id)
        root = self.storage_root or default_storage_root()

        results: list[dict[str, Any]] = []
        problems: list[str] = []
        skipped = rejected = 0
        for batch in batches:
            sha = batch.sha256(site_id)
            ledger = storage.plans_ledger_path(root, site_id, sha)
            entry = {
                "file": name,
                "rows": list(batch.rows),
                "sha256": sha,
                "site_id": site_id,
                "ledger": str(ledger),
                "batch": batch.index,
                "reused": False,
            }
            if not force:
                existing = storage.read_plans_ledger_entry(ledger)
                decision = self._check_previous(hook, batch, existing, ledger, dry_run)
                if decision == "skip":
                    skipped += 1
                    continue
                if decision == "await":
                    results.append({**entry, "import_log_id": int(existing["import_log_id"]), "reused": True})
                    continue
            if dry_run:
                self.log.info(
                    "dry run: would send %s (%d items, sha256 %s)",
                    batch.describe_rows(),
                    len(batch.items),
                    sha,
                )
                continue
            try:
                import_log_id = hook.plans_import_add(list(batch.items))
            except ValidationError as e:
                problems.extend(map_violations(batch, e.violations or [("", str(e))]))
                rejected += 1
                continue
            self.log.info("sent %s as import %s (sha256 %s)", batch.describe_rows(), import_log_id, sha)
            storage.write_plans_ledger_entry(
                ledger,
                {
                    "state": LEDGER_SENT,
                    "import_log_id": int(import_log_id),
                    "site_id": site_id,
                    "file": name,
                    "rows": list(batch.rows),
                    "items": len(batch.items),
                    "sha256": sha,
                    "sent_at": storage.utc_now_iso(),
                },
            )
            results.append({**entry, "import_log_id": int(import_log_id)})

        self.log.info(
            "%s: %d batch(es) to await, %d already imported, %d rejected%s",
            name,
            len(results),
            skipped,
            rejected,
            " (dry run: nothing sent)" if dry_run else "",
        )
        if problems:
            sent = ", ".join(str(r["import_log_id"]) for r in results)
            if sent:
                problems.append(
                    f"{name}: the other batches were sent (imports {sent}); the next run checks their status "
                    "instead of sending them again"
                )
            raise PlanFileError(problems)
        return results

    def _check_previous(
        self,
        hook: CalltouchHook,
        batch: PlanBatch,
        existing: dict[str, Any] | None,
        ledger: ObjectStoragePath,
        dry_run: bool,
    ) -> str:
        """Decide what to do with a batch the ledger knows: ``skip``, ``await`` (in progress) or ``send``."""
        if not existing:
            return "send"
        state, import_log_id = existing.get("state"), existing.get("import_log_id")
        if state == LEDGER_SUCCEEDED:
            self.log.info(
                "%s already imported (import %s, %s); not sent again",
                batch.describe_rows(),
                import_log_id,
                existing.get("succeeded_at"),
            )
            return "skip"
        if state != LEDGER_SENT or import_log_id is None:
            return "send"
        try:
            status = str(hook.plans_import_status(int(import_log_id)).get("status", ""))
        except (ValidationError, NotFoundError, MalformedResponseError) as e:
            self.log.warning(
                "%s: import %s from an earlier run cannot be checked (%s); sending again",
                batch.describe_rows(),
                import_log_id,
                e,
            )
            return "send"
        if status == PLANS_SUCCESS:
            if not dry_run:
                storage.mark_plans_ledger_succeeded(ledger, int(import_log_id))
            self.log.info(
                "%s: import %s from an earlier run succeeded; not sent again",
                batch.describe_rows(),
                import_log_id,
            )
            return "skip"
        if status == PLANS_IN_PROGRESS:
            self.log.info(
                "%s: import %s from an earlier run is still in progress; awaiting it instead",
                batch.describe_rows(),
                import_log_id,
            )
            return "skip" if dry_run else "await"
        self.log.warning(
            "%s: import %s from an earlier run ended with status %r; sending again",
            batch.describe_rows(),
            import_log_id,
            status,
        )
        return "send"
