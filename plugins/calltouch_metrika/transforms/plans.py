"""Plan files (CSV) -> validated Calltouch ``plans-import`` items, batched by 100.

Pure functions, no I/O: the caller reads the file's bytes (local path or any
``ObjectStoragePath``) and passes them in; nothing here talks to an API.

The file format (one row = one plan item)::

    date_from,date_to,source,medium,campaign,content,keyword,metric_type,metric_name,value
    2021-04-01,2021-04-02,yandex,cpc,april,sale,распродажа,Лиды,Уникальные лиды,100

* ``date_from``/``date_to`` are ISO dates (``YYYY-MM-DD``) in the file and are sent as
  ``dd-mm-yyyy`` (seed 001); both days are included, one day is ``date_from == date_to``. A plan
  date lies in :data:`MIN_PLAN_DATE` .. :data:`MAX_PLAN_DATE` (2000-01-01 .. 2099-12-31): Calltouch
  has no data before 2000, and ``0001-01-01`` or ``9999-12-31`` is a typo, not a plan.
* At least one of ``source``, ``medium``, ``campaign``, ``content``, ``keyword`` is filled;
  empty ones are left out of the item. A cell holding only blanks and invisible characters is empty.
* Text cells (the five dimensions and ``metric_name``) hold at most :data:`MAX_TEXT_CHARS` (255)
  characters: seed 001 gives no limit; 255 is a common column width and far above any real UTM value,
  and a 100,000-character cell is a broken file, not a plan.
* ``metric_type``/``metric_name`` are checked against :mod:`calltouch_metrika.catalog`
  exactly as written there (no case folding, ``ё`` is not ``е``); custom columns
  (``Пользовательские``) and goals (``Цели``) take any name that is not a Calltouch metric name.
* ``value`` is an integer (``100``, ``-5``; not ``1.5``, ``10 000`` or empty) that fits a signed
  64-bit integer (-2^63 .. 2^63-1): seed 001 types ``items[n].metric.value`` as ``integer``
  without a width; we bound it to 64 bits (a larger number cannot be any server's integer). We do
  not bound it to 32 bits (2^31-1 = 2,147,483,647): money metrics (``Выручка``, ``Бюджет``) of a
  large advertiser's yearly plan exceed it, and nothing says Calltouch's integer is 32-bit; if the
  API refuses such a value, its violation is mapped back to the file row (:func:`map_violations`).
* No cell contains an invisible character: control characters (``Cc``: NUL, ``U+0001``-``U+001F``
  except tab and line breaks, which a quoted CSV cell may hold; ``U+007F``-``U+009F``), format
  characters (``Cf``: zero-width space U+200B, word joiner U+2060, BOM U+FEFF, soft hyphen, the
  bidirectional marks and overrides), the line and paragraph separators U+2028/U+2029 (``Zl``,
  ``Zp``), private-use and unassigned code points (:mod:`calltouch_metrika.transforms.text`): they
  are invisible in the Calltouch UI and would make a plan that matches no source.
* Leading/trailing spaces of every cell are ignored; a UTF-8 BOM is accepted.

Every problem of a file is collected and raised at once in one
:class:`~calltouch_metrika.exceptions.PlanFileError`, each as ``file:row: field: message``
where ``row`` is the file's line number (the header is line 1), so a user can fix the whole
file in one pass. Violations the API reports for ``items[n].field`` are mapped back to the
same form by :func:`map_violations`.
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import io
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from calltouch_metrika.catalog import CALLTOUCH_METRIC_NAMES, FREE_NAME_TYPES, METRIC_TYPES
from calltouch_metrika.exceptions import PlanFileError
from calltouch_metrika.transforms.text import find_invisible, strip_invisible

__all__ = [
    "DIMENSIONS",
    "MAX_BATCH_SIZE",
    "MAX_PLAN_DATE",
    "MAX_TEXT_CHARS",
    "MIN_PLAN_DATE",
    "PLAN_COLUMNS",
    "PlanBatch",
    "PlanRow",
    "batch_sha256",
    "canonical_json",
    "decode_plan_bytes",
    "format_problem",
    "make_batches",
    "map_violations",
    "parse_plan_csv",
    "read_plan_bytes",
]

#: The file's columns, in the order written by the sample files.
PLAN_COLUMNS: tuple[str, ...] = (
    "date_from",
    "date_to",
    "source",
    "medium",
    "campaign",
    "content",
    "keyword",
    "metric_type",
    "metric_name",
    "value",
)
#: Traffic dimensions; at least one must be filled (seed 001).
DIMENSIONS: tuple[str, ...] = ("source", "medium", "campaign", "content", "keyword")
#: ``plans-import/add`` accepts at most 100 items per request (seed 001).
MAX_BATCH_SIZE = 100

_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
#: plan dates outside this range are refused (see the module docstring)
MIN_PLAN_DATE = date(2000, 1, 1)
MAX_PLAN_DATE = date(2099, 12, 31)
#: the longest text cell (dimensions, metric_name) accepted (see the module docstring)
MAX_TEXT_CHARS = 255
_TEXT_COLUMNS = (*DIMENSIONS, "metric_name")
#: kept inside a cell: a quoted CSV cell may hold them
_CELL_WHITESPACE = "\t\n\r"
_INTEGER = re.compile(r"[+-]?[0-9]+")  # ASCII digits only: \\d would take "１００"
_ITEM_PATH = re.compile(r"^items\[(\d+|n)\](?:\.(.+))?$")
#: API field path (after ``items[i].``) -> the plan file's column.
_API_FIELD_TO_COLUMN: dict[str, str] = {
    "dateFrom": "date_from",
    "dateTo": "date_to",
    "metric": "metric",
    "metric.type": "metric_type",
    "metric.name": "metric_name",
    "metric.value": "value",
    **{d: d for d in DIMENSIONS},
}


def format_problem(file: str, row: int | str | None, field: str, message: str) -> str:
    """One problem line: ``file:row: field: message`` (``file: field: message`` without a row)."""
    where = f"{file}:{row}" if row not in (None, "") else file
    return f"{where}: {field}: {message}" if field else f"{where}: {message}"


@dataclass(frozen=True)
class PlanRow:
    """One validated plan row: where it came from and the API item built from it."""

    file: str
    row: int
    item: dict[str, Any]


@dataclass(frozen=True)
class PlanBatch:
    """Up to :data:`MAX_BATCH_SIZE` items sent in one ``plans-import/add``, with their file rows.

    ``rows[i]`` is the file line of ``items[i]``, so ``items[i].field`` violations map back.
    """

    file: str
    index: int
    rows: tuple[int, ...]
    items: tuple[dict[str, Any], ...]

    def sha256(self, site_id: int) -> str:
        """Content hash of this batch for ``site_id`` (see :func:`batch_sha256`)."""
        return batch_sha256(self.items, site_id)

    def describe_rows(self) -> str:
        """``file:rows 2-101`` style description of where this batch's items came from."""
        return f"{self.file}:{_describe_rows(self.rows)}"


def _describe_rows(rows: Sequence[int]) -> str:
    """Compress sorted-ish row numbers into ``2-5,9,12-13``."""
    parts: list[str] = []
    start = prev = None
    for r in rows:
        if start is None:
            start = prev = r
        elif r == prev + 1:
            prev = r
        else:
            parts.append(f"{start}-{prev}" if start != prev else str(start))
            start = prev = r
    if start is not None:
        parts.append(f"{start}-{prev}" if start != prev else str(start))
    label = "row" if len(rows) == 1 else "rows"
    return f"{label} {','.join(parts)}"


def canonical_json(items: Iterable[dict[str, Any]], site_id: int) -> bytes:
    """The canonical bytes hashed for idempotency: sorted keys, no spaces, UTF-8, site id included."""
    payload = {"site_id": int(site_id), "items": list(items)}
    return json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


def batch_sha256(items: Iterable[dict[str, Any]], site_id: int) -> str:
    """SHA-256 (hex) of :func:`canonical_json`; the plans ledger's file name."""
    return hashlib.sha256(canonical_json(items, site_id)).hexdigest()


def decode_plan_bytes(data: bytes, *, file: str) -> str:
    """Decode a plan file as UTF-8 (BOM optional); a bad byte is reported with its line number."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise PlanFileError(
            [
                format_problem(
                    file,
                    line,
                    "encoding",
                    f"the file is not UTF-8 (byte 0x{data[e.start]:02x} at offset {e.start}); "
                    "save it as UTF-8",
                )
            ]
        ) from None


def _suggest(value: str, choices: Iterable[str]) -> str:
    match = difflib.get_close_matches(value, list(choices), n=1, cutoff=0.75)
    return f" (did you mean {match[0]!r}?)" if match else ""


def _type_of(name: str) -> str | None:
    for metric_type, names in METRIC_TYPES.items():
        if name in names:
            return metric_type
    return None


def _parse_date(raw: str, field: str, problem: Any) -> date | None:
    if not raw:
        problem(field, "must not be empty (an ISO date, YYYY-MM-DD)")
        return None
    if not _ISO_DATE.fullmatch(raw):
        problem(field, f"{raw!r} is not an ISO date (YYYY-MM-DD)")
        return None
    try:
        value = date.fromisoformat(raw)
    except ValueError:
        problem(field, f"{raw!r} is not a valid date")
        return None
    if not MIN_PLAN_DATE <= value <= MAX_PLAN_DATE:
        problem(
            field,
            f"{raw} is outside {MIN_PLAN_DATE.isoformat()} .. {MAX_PLAN_DATE.isoformat()} (a typo?)",
        )
        return None
    return value


def _api_date(day: date) -> str:
    """``dd-mm-yyyy`` (seed 001), the year always 4 digits (``strftime("%Y")`` gives ``1`` for year 1)."""
    return f"{day.day:02d}-{day.month:02d}-{day.year:04d}"


def _validate_metric(metric_type: str, metric_name: str, problem: Any) -> None:
    if not metric_type:
        problem("metric_type", "must not be empty")
    elif metric_type not in METRIC_TYPES:
        problem(
            "metric_type",
            f"unknown metric type {metric_type!r}{_suggest(metric_type, METRIC_TYPES)}; "
            f"expected one of: {', '.join(METRIC_TYPES)}",
        )
    if not metric_name:
        problem("metric_name", "must not be empty")
        return
    if metric_type in FREE_NAME_TYPES:
        if metric_name in CALLTOUCH_METRIC_NAMES:
            kind = "custom column" if metric_type == "Пользовательские" else "goal"
            problem(
                "metric_name",
                f"{kind} name {metric_name!r} collides with the Calltouch metric "
                f"{metric_name!r} (type {_type_of(metric_name)!r}); "
                f"names of type {metric_type!r} must differ from Calltouch metric names",
            )
        return
    allowed = METRIC_TYPES.get(metric_type)
    if allowed is None or metric_name in allowed:
        return
    owner = _type_of(metric_name)
    if owner is not None:
        problem(
            "metric_name",
            f"{metric_name!r} is a metric of type {owner!r}, not of type {metric_type!r}",
        )
    else:
        hint = _suggest(metric_name, allowed)
        problem(
            "metric_name",
            f"{metric_name!r} is not a metric of type {metric_type!r}"
            + (hint or f"; expected one of: {', '.join(sorted(allowed))}"),
        )


def parse_plan_csv(text: str, *, file: str) -> list[PlanRow]:
    """Validate a plan CSV (already decoded) and build one API item per row.

    :param text: the file's text (a leading BOM is tolerated).
    :param file: the name shown in problems (usually the file name).
    :raises PlanFileError: listing every problem found, as ``file:row: field: message``.
    """
    text = text.removeprefix("\ufeff")
    problems: list[str] = []
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header_cells = next(reader)
    except StopIteration:
        raise PlanFileError([format_problem(file, 1, "header", "the file is empty")]) from None
    except csv.Error as e:
        raise PlanFileError([format_problem(file, 1, "header", f"not valid CSV: {e}")]) from None

    header = [c.strip() for c in header_cells]
    position: dict[str, int] = {}
    for i, name in enumerate(header):
        if name in position:
            problems.append(format_problem(file, 1, name, "column appears more than once"))
        elif name not in PLAN_COLUMNS:
            label = name or f"column {i + 1}"
            problems.append(
                format_problem(
                    file,
                    1,
                    label,
                    f"unknown column{_suggest(name, PLAN_COLUMNS)}; expected: {', '.join(PLAN_COLUMNS)}",
                )
            )
        else:
            position[name] = i
    for name in PLAN_COLUMNS:
        if name not in position:
            problems.append(format_problem(file, 1, name, "missing column"))

    rows: list[PlanRow] = []
    seen: dict[tuple[str, ...], int] = {}
    last_line = reader.line_num
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            problems.append(format_problem(file, last_line + 1, "row", f"not valid CSV: {e}"))
            break
        line = last_line + 1
        last_line = reader.line_num
        if not cells or all(not c.strip() for c in cells):
            continue  # blank line
        row_problems: list[str] = []

        def problem(field: str, message: str, _line: int = line, _out: list[str] = row_problems) -> None:
            _out.append(format_problem(file, _line, field, message))

        if len(cells) != len(header):
            problem("row", f"has {len(cells)} fields, the header has {len(header)}")
            problems.extend(row_problems)
            continue
        get = {name: cells[i].strip() for name, i in position.items()}
        for name, cell in get.items():
            at = find_invisible(cell, keep=_CELL_WHITESPACE)
            if at >= 0:
                problem(
                    name,
                    f"contains the invisible character U+{ord(cell[at]):04X} at position {at + 1} "
                    "(invisible characters are not allowed)",
                )
            if name in _TEXT_COLUMNS and len(cell) > MAX_TEXT_CHARS:
                problem(name, f"is {len(cell)} characters long; at most {MAX_TEXT_CHARS} are accepted")

        d_from = _parse_date(get["date_from"], "date_from", problem) if "date_from" in get else None
        d_to = _parse_date(get["date_to"], "date_to", problem) if "date_to" in get else None
        if d_from and d_to and d_from > d_to:
            problem("date_from", f"date_from {d_from.isoformat()} is after date_to {d_to.isoformat()}")

        dims = {d: get[d] for d in DIMENSIONS if strip_invisible(get.get(d, "")).strip()}
        if all(d in position for d in DIMENSIONS) and not dims:
            problem("source", "at least one of source, medium, campaign, content, keyword must be filled")

        metric_type, metric_name = get.get("metric_type", ""), get.get("metric_name", "")
        if "metric_type" in position and "metric_name" in position:
            _validate_metric(metric_type, metric_name, problem)

        value: int | None = None
        if "value" in get:
            raw = get["value"]
            if not raw:
                problem("value", "must not be empty (an integer)")
            elif not _INTEGER.fullmatch(raw):
                problem("value", f"{raw!r} is not an integer (digits only, no spaces or decimals)")
            elif not _INT64_MIN <= int(raw) <= _INT64_MAX:
                problem(
                    "value",
                    f"{raw} is out of range: a plan value is a signed 64-bit integer (|value| < 2^63)",
                )
            else:
                value = int(raw)

        if not row_problems and len(position) == len(PLAN_COLUMNS):
            key = (get["date_from"], get["date_to"], *(get[d] for d in DIMENSIONS), metric_type, metric_name)
            if key in seen:
                problem(
                    "row",
                    f"duplicate of row {seen[key]} (same dates, source/medium/campaign/content/keyword "
                    "and metric)",
                )
            else:
                seen[key] = line
        problems.extend(row_problems)
        if row_problems or problems or d_from is None or d_to is None or value is None:
            continue
        item: dict[str, Any] = {
            "dateFrom": _api_date(d_from),
            "dateTo": _api_date(d_to),
            **dims,
            "metric": {"type": metric_type, "name": metric_name, "value": value},
        }
        rows.append(PlanRow(file=file, row=line, item=item))

    if problems:
        raise PlanFileError(problems)
    if not rows:
        raise PlanFileError([format_problem(file, 2, "row", "the file has a header but no plan rows")])
    return rows


def read_plan_bytes(data: bytes, *, file: str) -> list[PlanRow]:
    """:func:`decode_plan_bytes` then :func:`parse_plan_csv`."""
    return parse_plan_csv(decode_plan_bytes(data, file=file), file=file)


def make_batches(rows: Sequence[PlanRow], size: int = MAX_BATCH_SIZE) -> list[PlanBatch]:
    """Split rows into batches of at most ``size`` items, keeping the file's order.

    The same file always gives the same batches (and so the same content hashes).
    """
    if not 1 <= size <= MAX_BATCH_SIZE:
        raise ValueError(f"batch size must be between 1 and {MAX_BATCH_SIZE}, got {size}")
    batches = []
    for index, start in enumerate(range(0, len(rows), size)):
        chunk = rows[start : start + size]
        batches.append(
            PlanBatch(
                file=chunk[0].file,
                index=index,
                rows=tuple(r.row for r in chunk),
                items=tuple(r.item for r in chunk),
            )
        )
    return batches


def map_violations(batch: PlanBatch, violations: Iterable[tuple[str, str]]) -> list[str]:
    """Turn the API's ``(fieldPath, message)`` violations into ``file:row: field: message`` lines.

    ``items[3].metric.name`` becomes ``plan.csv:<row of item 3>: metric_name: ...``; a path the
    API gives without an index (``items[n].dateFrom``, ``items``, or none) names the batch's rows.
    """
    out: list[str] = []
    for field_path, message in violations:
        m = _ITEM_PATH.match(field_path or "")
        if m:
            index, rest = m.group(1), m.group(2) or ""
            column = _API_FIELD_TO_COLUMN.get(rest, rest or "item")
            if index != "n" and int(index) < len(batch.rows):
                out.append(format_problem(batch.file, batch.rows[int(index)], column, message))
                continue
            out.append(format_problem(batch.describe_rows(), None, column, f"{message} ({field_path})"))
            continue
        out.append(format_problem(batch.describe_rows(), None, field_path or "request", message))
    return out
