"""Exactly once per call: the counter's critical section, the days a run sends, the linkage threshold.

The upload operator uses this module inside the counter's lease (``lease.CounterLease``)::

    threshold = read_join_threshold(hook, counter_id, now=now)        # once per run
    with CounterLease(root, counter_id) as lease:
        sender = CounterSender(hook=hook, ledger=CallLedger(root, counter_id), lease=lease, ...)
        uploadings = sender.reconcile()    # one list request: settle 'sending' parts, confirm 'sent'
        for day in days:
            sender.import_legacy(day, uploadings, csv_path=..., fallback_ids=...)
            held = sender.ledger.held_call_ids(site_id)   # whichever pipeline sent them
            new = uploadable - held
            if new: sender.send(day, new, upload=lambda comment: hook.upload_calls(..., comment=comment))

Why each piece:

* **reconcile first**: a part left ``sending`` (a crash, a lost response, a lookup that failed) is
  resolved by its deterministic comment before anything new is computed: found -> ``sent`` (upload
  id from Metrika), absent -> ``failed`` (its calls become free to send again). If Metrika's list
  cannot be read, nothing is sent: "could not learn the outcome" is not "Metrika did not store it".
* **upgrade**: a day uploaded before the ledger existed carries the old comment
  (``ledger.legacy_comment``); its calls are imported into the ledger (part 0, source ``import``)
  from the CSV stored for that day, so nothing is re-sent after upgrading.
* **send**: records ``sending`` *before* the request, checks the lease, uploads under
  ``ledger.part_comment(pipeline, day, part)`` and records ``sent``. A lost response is resolved by
  looking the comment up: found -> ``sent``; the lookups answer and the comment is absent ->
  ``failed`` + :class:`NotStoredError` (retrying is safe); the lookups fail ->
  :class:`OutcomeNotLearntError`, the part stays ``sending`` and the next run resolves it first.
* **linkage threshold** (api-notes §3.3, the current calls guide's readiness step): calls before
  ``GET …/offline_conversions/calls_visit_join_threshold`` cannot link to a visit; they are rejected
  as ``before_join_threshold``. When the API does not answer, the 21-day rule is used and the log
  says so.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowException

from calltouch_metrika.ledger import (
    TERMINAL_STATUSES,
    CallLedger,
    PartKey,
    PartState,
    call_ids_from_csv,
    legacy_comment,
    part_comment,
)

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

    from calltouch_metrika.lease import CounterLease

log = logging.getLogger(__name__)

#: Metrika links calls to visits up to 21 days back (api-notes §3.3).
LINKAGE_WINDOW_DAYS = 21
#: The warning ``force_reupload`` prints (api-notes §3.4).
FORCE_WARNING = (
    "force_reupload: re-sending {n} call(s) of {day} that the counter's ledger already holds. Metrika "
    "does not document whether it deduplicates repeated calls (api-notes §3.4): they may be counted twice."
)


class NotStoredError(AirflowException):
    """The upload got no answer, and Metrika's list of uploads shows no upload with its comment."""


class OutcomeNotLearntError(AirflowException):
    """The upload got no answer and the lookups by comment failed too: its outcome is unknown."""


@dataclass(frozen=True)
class JoinThreshold:
    """The earliest call time Metrika can link to a visit, and where that came from.

    :ivar at: UTC datetime.
    :ivar source: ``"api"`` (``calls_visit_join_threshold``) or ``"fallback"`` (the 21-day rule).
    :ivar note: one line for the log and the upload summary.
    """

    at: datetime
    source: str
    note: str

    def day(self, tz_name: str) -> date:
        """The local day of :attr:`at` in ``tz_name`` (days before it hold no linkable call)."""
        import pendulum

        return pendulum.instance(self.at).in_timezone(pendulum.timezone(tz_name)).date()


def parse_join_threshold(body: Any) -> datetime:
    """``{"date": "2026-11-09T05:00:00Z"}`` (or a date without time) -> aware UTC datetime.

    The shape is [I] (rym ``rym_allow_calls``, api-notes §3.3). :raises ValueError: another shape.
    """
    value = body.get("date") if isinstance(body, Mapping) else None
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"calls_visit_join_threshold answered without a 'date': {body!r}")
    text = value.strip().replace("Z", "+00:00")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"calls_visit_join_threshold 'date' is not a date: {value!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def read_join_threshold(
    hook: Any, counter_id: int, *, now: datetime, window_days: int = LINKAGE_WINDOW_DAYS
) -> JoinThreshold:
    """The counter's linkage threshold (one request), never earlier than ``now - window_days``.

    Any failure (no answer, an error, calls accounting switched off, an unexpected body) falls back
    to the 21-day rule, logged as a warning: a threshold we cannot read must not stop the upload,
    and the 21-day rule is what Metrika applies to a counter whose accounting has fully grown.
    The caller logs :attr:`JoinThreshold.note` (a warning for ``"fallback"``).
    """
    floor = now - timedelta(days=window_days)
    try:
        at = parse_join_threshold(hook.get_calls_visit_join_threshold(counter_id))
    except Exception as exc:
        note = (
            f"linkage threshold of counter {counter_id} not available ({exc}); falling back to the "
            f"{window_days}-day rule: calls before {floor:%Y-%m-%d %H:%M} UTC are not sent"
        )
        return JoinThreshold(floor, "fallback", note)
    if at < floor:
        at = floor
    return JoinThreshold(
        at, "api", f"linkage threshold of counter {counter_id}: calls from {at:%Y-%m-%d %H:%M} UTC link"
    )


def run_days(interval_day: date, *, settle_days: int = 0, lookback_days: int = 0) -> tuple[date, list[date]]:
    """The day a run sends and the lookback days it re-reads, oldest first.

    The run of local day ``D`` sends ``D - settle_days`` (so manager tags and deals have settled) and
    re-reads the ``lookback_days`` days before it for calls that arrived late.
    E.g. ``run_days(date(2026, 11, 23), settle_days=1, lookback_days=2)`` ->
    ``(2026-11-22, [2026-11-20, 2026-11-21])``.
    """
    if settle_days < 0 or lookback_days < 0:
        raise ValueError("settle_days and lookback_days must be >= 0")
    main = interval_day - timedelta(days=settle_days)
    return main, [main - timedelta(days=k) for k in range(lookback_days, 0, -1)]


@dataclass
class SendResult:
    """One upload made by :meth:`CounterSender.send`."""

    key: PartKey
    comment: str
    upload_id: int
    status: str | None
    calls: int
    forced: bool
    source: str


class CounterSender:
    """The counter's critical section: reconcile with Metrika, import old uploads, send new calls.

    Use it only while holding the counter's :class:`~calltouch_metrika.lease.CounterLease`.

    :param hook: a ``MetrikaHook`` (``list_calls_uploadings``).
    :param ledger: the counter's :class:`CallLedger`.
    :param lease: the held lease (checked right before each upload); None only in tests of pure parts.
    :param site_id: the pipeline's Calltouch site.
    :param pipeline: the pipeline name.
    :param lookup_attempts: lookups by comment after a lost response.
    :param lookup_delay: seconds before the second lookup (then 2x, 3x, …).
    """

    def __init__(
        self,
        *,
        hook: Any,
        ledger: CallLedger,
        lease: CounterLease | None,
        site_id: int,
        pipeline: str,
        lookup_attempts: int = 4,
        lookup_delay: float = 2.0,
        logger: logging.Logger | logging.LoggerAdapter | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.hook = hook
        self.ledger = ledger
        self.lease = lease
        self.counter_id = ledger.counter_id
        self.site_id = int(site_id)
        self.pipeline = pipeline
        self.lookup_attempts = max(1, int(lookup_attempts))
        self.lookup_delay = float(lookup_delay)
        self.log = logger or log
        self.sleep = sleep
        self.requests = 0

    # -- Metrika's list of uploads ----------------------------------------------------------------
    def _list(self) -> list[dict[str, Any]]:
        self.requests += 1
        return list(self.hook.list_calls_uploadings(self.counter_id))

    @staticmethod
    def _by_comment(uploadings: Iterable[Mapping[str, Any]], comment: str) -> dict[str, Any] | None:
        matches = [dict(u) for u in uploadings if u.get("comment") == comment]
        if not matches:
            return None
        return max(matches, key=lambda u: (str(u.get("create_time") or ""), int(u.get("id") or 0)))

    def reconcile(self) -> list[dict[str, Any]]:
        """Read Metrika's uploads once; resolve every ``sending`` part; confirm finished ``sent`` parts.

        Returns the uploads list (for :meth:`import_legacy`).
        :raises OutcomeNotLearntError: the list cannot be read (nothing may be sent before it is).
        """
        self.ledger.refresh()
        try:
            uploadings = self._list()
        except Exception as exc:
            pending = self.ledger.pending()
            what = (
                f"{len(pending)} earlier upload(s) ({', '.join(p.comment for p in pending)})"
                if pending
                else "which calls earlier runs sent"
            )
            raise OutcomeNotLearntError(
                f"could not read counter {self.counter_id}'s uploads ({exc}), so could not learn the "
                f"outcome of {what}; nothing was sent. Retrying this task is safe."
            ) from exc
        for st in self.ledger.pending():
            self._settle(st, self._by_comment(uploadings, st.comment), source="lookup")
        for st in self.ledger.unconfirmed():
            found = next((u for u in uploadings if int(u.get("id") or -1) == st.upload_id), None)
            status = (found or {}).get("status")
            if status in TERMINAL_STATUSES:
                self._record(st.key, "confirmed", st, upload_id=st.upload_id, status=status, source="lookup")
        return uploadings

    def _record(self, key: PartKey, state: str, st: PartState, **kw: Any) -> None:
        self.ledger.record(
            key, state, site_id=st.site_id, call_ids=st.call_ids, comment=st.comment, forced=st.forced, **kw
        )

    def _settle(self, st: PartState, found: Mapping[str, Any] | None, *, source: str) -> None:
        if found:
            self.log.info(
                "Counter %s: upload %r (left 'sending') was stored by Metrika as %s; ledger completed",
                self.counter_id,
                st.comment,
                found.get("id"),
            )
            self._record(
                st.key, "sent", st, upload_id=int(found["id"]), status=found.get("status"), source=source
            )
        else:
            self.log.warning(
                "Counter %s: upload %r (left 'sending') is not in Metrika's list: it was not stored; its "
                "%d call(s) are free to send again",
                self.counter_id,
                st.comment,
                len(st.call_ids),
            )
            self._record(st.key, "failed", st, source=source)

    # -- upgrade ----------------------------------------------------------------------------------
    def import_legacy(
        self,
        day: date,
        uploadings: Iterable[Mapping[str, Any]],
        *,
        csv_path: ObjectStoragePath,
        fallback_ids: Iterable[int] = (),
    ) -> int:
        """Import ``day``'s upload made before the ledger existed; returns the calls imported (0: none).

        Only when the ledger has no part of (pipeline, day) and Metrika has an upload with the old
        comment. Its calls come from the CSV stored for that day (``CallTrackerURL`` names each
        ``callId``); if that CSV is missing or unreadable, ``fallback_ids`` (the day's uploadable calls
        now) are imported instead, with a warning: never twice is kept, a late call may be missed.
        """
        if self.ledger.has_day(self.pipeline, day):
            return 0
        comment = legacy_comment(self.pipeline, self.site_id, day)
        found = self._by_comment(uploadings, comment)
        if not found:
            return 0
        ids: list[int] | None
        try:
            ids = call_ids_from_csv(csv_path.read_bytes())
        except (FileNotFoundError, OSError, UnicodeDecodeError) as exc:
            self.log.warning(
                "Could not read the stored CSV %s of legacy upload %r: %s", csv_path, comment, exc
            )
            ids = None
        if ids is None:
            ids = sorted({int(c) for c in fallback_ids})
            self.log.warning(
                "Legacy upload %r (id %s): its CSV names no callIds; importing the day's %d uploadable "
                "call(s) as sent by it (none of them will be re-sent)",
                comment,
                found.get("id"),
                len(ids),
            )
        key = PartKey(self.pipeline, day, 0)
        self.ledger.record(
            key,
            "sent",
            site_id=self.site_id,
            call_ids=ids,
            comment=comment,
            upload_id=int(found["id"]),
            sent_at=_parse_time(found.get("create_time")),
            source="import",
            status=found.get("status"),
        )
        self.log.info(
            "Imported legacy upload %s (%r) into counter %s's ledger: %d call(s)",
            found.get("id"),
            comment,
            self.counter_id,
            len(ids),
        )
        return len(ids)

    # -- sending ----------------------------------------------------------------------------------
    def next_key(self, day: date) -> tuple[PartKey, str]:
        """The next part of (pipeline, ``day``) and its comment."""
        key = PartKey(self.pipeline, day, self.ledger.next_part(self.pipeline, day))
        return key, part_comment(self.pipeline, self.site_id, day, key.part)

    def send(
        self,
        key: PartKey,
        comment: str,
        call_ids: Iterable[int],
        upload: Callable[[str], Mapping[str, Any]],
        *,
        forced: bool = False,
    ) -> SendResult:
        """Record ``sending``, check the lease, ``upload(comment)``, record ``sent``.

        :param upload: sends the CSV with the given comment; returns Metrika's upload record.
        :raises NotStoredError: no answer, and Metrika's list has no upload with the comment.
        :raises OutcomeNotLearntError: no answer and the lookups failed (the part stays ``sending``).
        """
        from calltouch_metrika.exceptions import OutcomeUnknownError

        ids = sorted({int(c) for c in call_ids})
        sent_at = datetime.now(UTC)
        common: dict[str, Any] = {
            "site_id": self.site_id,
            "call_ids": ids,
            "comment": comment,
            "forced": forced,
            "sent_at": sent_at,
        }
        self.ledger.record(key, "sending", **common)
        if self.lease is not None:
            self.lease.check()
        try:
            up = upload(comment)
            source = "upload"
        except OutcomeUnknownError as exc:
            self.log.warning(
                "The upload's response was lost (%s); looking it up by its comment %r", exc, comment
            )
            up = self._lookup(comment, exc)
            source = "lookup"
            if up is None:
                self.ledger.record(key, "failed", source="lookup", **common)
                raise NotStoredError(
                    f"The upload to counter {self.counter_id} got no response and Metrika's list of "
                    f"uploads has none with the comment {comment!r} after {self.lookup_attempts} "
                    "lookup(s): Metrika did not store it. Retrying this task is safe (the ledger marks "
                    "the part failed; its calls are sent again under the next part)."
                ) from exc
        upload_id = int(up["id"])
        self.ledger.record(key, "sent", upload_id=upload_id, status=up.get("status"), source=source, **common)
        return SendResult(key, comment, upload_id, up.get("status"), len(ids), forced, source)

    def _lookup(self, comment: str, cause: BaseException) -> dict[str, Any] | None:
        """The upload with ``comment``; None if the list answered without it; raises if never answered."""
        answered = False
        errors: list[str] = []
        for attempt in range(1, self.lookup_attempts + 1):
            try:
                found = self._by_comment(self._list(), comment)
                answered = True
            except Exception as exc:  # keep trying: the point is to learn the outcome
                self.log.warning("Lookup %d of %r failed: %s", attempt, comment, exc)
                errors.append(str(exc))
                found = None
            if found:
                self.log.info("Found the upload: id %s, status %s", found.get("id"), found.get("status"))
                return found
            if attempt < self.lookup_attempts:
                self.sleep(self.lookup_delay * attempt)
        if answered:
            return None
        raise OutcomeNotLearntError(
            f"The upload {comment!r} to counter {self.counter_id} got no response, and all "
            f"{self.lookup_attempts} lookups of Metrika's uploads failed (last: {errors[-1] if errors else '?'}): "
            "could not learn the outcome. The ledger keeps the part as 'sending'; the next run looks the "
            "comment up before sending anything, so retrying is safe."
        ) from cause


def _parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
