"""Strict parser of Metrika's offline-calls CSV (seed 000, api-notes §3.3).

Two kinds of failure, by design:

* **File errors** make the whole upload fail with HTTP 400 and Metrika's error body naming the
  line (1-based, the header is line 1) and the column: not UTF-8, empty file, unknown or duplicate
  column, not exactly one identifier column (``ClientId`` | ``UserId`` | ``Yclid``), no ``DateTime``
  column, an identifier that contradicts ``client_id_type``, a row with the wrong number of fields,
  broken quoting, and any invalid value: ``DateTime`` not unix *seconds* or in the future, a flag
  (``StaticCall``, ``CallMissed``, ``FirstTimeCaller``) not ``0``/``1``, ``Price`` not a
  non-negative dot-decimal, ``Currency`` not an ISO 4217 code, ``PhoneNumber`` not ``+`` and
  10-15 digits without spaces, a duration (``TalkDuration``, ``HoldDuration``) not a non-negative
  integer.
* **Row rejections** only lower ``line_quantity`` (the row still counts in ``source_quantity``):
  an empty identifier, or a ``ClientId``/``Yclid`` that is not a number.

Optional columns may hold an empty value (meaning "not given"). A column whose header is empty (R's
``write.csv`` row names, ``""``) is ignored with its values: not validated, not stored (the sandbox's
choice for this undocumented case, sandbox/README.md).
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field

IDENTIFIERS = {"ClientId": "CLIENT_ID", "UserId": "USER_ID", "Yclid": "YCLID"}
OPTIONAL = (
    "StaticCall",
    "Price",
    "Currency",
    "PhoneNumber",
    "TalkDuration",
    "HoldDuration",
    "CallMissed",
    "Tag",
    "FirstTimeCaller",
    "URL",
    "CallTrackerURL",
)
KNOWN_COLUMNS = frozenset({*IDENTIFIERS, "DateTime", *OPTIONAL})
FLAGS = ("StaticCall", "CallMissed", "FirstTimeCaller")
DURATIONS = ("TalkDuration", "HoldDuration")
MAX_BYTES = 1 << 30  # 1 GB

# Active ISO 4217 codes.
_ISO_4217_CODES = """AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN BWP BYN BZD
    CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF
    GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP
    LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB
    PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD SSP STN SVC SYP
    SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD UYU UZS VES VND VUV WST XAF XCD XOF XPF YER ZAR ZMW
ZWL"""
ISO_4217 = frozenset(_ISO_4217_CODES.split())
_UNIX_SECONDS = re.compile(r"^[0-9]{1,10}$")
_PRICE = re.compile(r"^[0-9]+(\.[0-9]+)?$")
_PHONE = re.compile(r"^\+[0-9]{10,15}$")
_UINT = re.compile(r"^[0-9]+$")


class CsvError(ValueError):
    """An invalid file: ``message`` for humans, ``location`` like ``line 3, column DateTime``."""

    def __init__(self, message: str, line: int | None = None, column: str | None = None) -> None:
        where = ", ".join(
            p for p in (f"line {line}" if line else "", f"column {_clean(column)}" if column else "") if p
        )
        self.location = where or "file"
        super().__init__(f"{message} ({where})" if where else message)


@dataclass
class ParsedCsv:
    """What the upload keeps: columns, every row as received, and the counts Metrika reports."""

    columns: list[str]
    identifier: str
    client_id_type: str
    rows: list[dict[str, str]] = field(default_factory=list)
    valid_rows: list[dict[str, str]] = field(default_factory=list)
    static_calls: int = 0
    dynamic_calls: int = 0


#: Byte-order marks of the encodings a spreadsheet may save a "Unicode" CSV in (longest first).
_BOMS = (
    (b"\x00\x00\xfe\xff", "UTF-32"),
    (b"\xff\xfe\x00\x00", "UTF-32"),
    (b"\xfe\xff", "UTF-16"),
    (b"\xff\xfe", "UTF-16"),
)
_NOT_UTF8 = "File is not valid UTF-8"


def _clean(text: str, limit: int = 60) -> str:
    """``text`` fit for an error's message or location: control characters escaped, at most ``limit`` chars."""
    out = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return out if len(out) <= limit else out[: limit - 1] + "…"


def _decode(data: bytes) -> str:
    """The file as text; :class:`CsvError` when it is not UTF-8 (a UTF-8 BOM is fine).

    A UTF-16/32 file (Excel's "Unicode text", PowerShell's default) is named as such, location ``file``:
    its bytes are full of NULs, which must not reach the error's message or location. UTF-16 without a BOM
    even decodes as "valid" UTF-8 (an ASCII character then a NUL), so any NUL byte counts as not UTF-8.
    """
    for bom, name in _BOMS:
        if data.startswith(bom):
            raise CsvError(f"{_NOT_UTF8}: it is {name} (byte-order mark); save it as UTF-8")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    nul = data.find(b"\x00")
    if nul >= 0:
        line = data.count(b"\n", 0, nul) + 1
        raise CsvError(f"{_NOT_UTF8}: it holds NUL bytes (UTF-16 without a byte-order mark?)", line)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        line_start = data.rfind(b"\n", 0, exc.start) + 1
        header = data.split(b"\n", 1)[0].decode("utf-8", "replace").strip().split(",")
        index = data.count(b",", line_start, exc.start)
        column = header[index].strip() if index < len(header) else None
        if column not in KNOWN_COLUMNS:  # a header that is itself not UTF-8: name no column
            column = None
        raise CsvError(_NOT_UTF8, line, column) from None


def _check_value(column: str, value: str, line: int, now_ts: int) -> None:
    if column == "DateTime":
        if not _UNIX_SECONDS.match(value):
            raise CsvError(f"Invalid DateTime {value!r}: expected a unix timestamp in seconds", line, column)
        if int(value) > now_ts:
            raise CsvError(f"DateTime {value} is in the future", line, column)
        return
    if value == "":
        return
    if column in FLAGS:
        if value not in ("0", "1"):
            raise CsvError(f"Invalid {column} {value!r}: expected 0 or 1", line, column)
    elif column == "Price":
        if not _PRICE.match(value):
            raise CsvError(
                f"Invalid Price {value!r}: expected a non-negative number with a dot as the decimal "
                "separator",
                line,
                column,
            )
    elif column == "Currency":
        if value not in ISO_4217:
            raise CsvError(f"Invalid Currency {value!r}: expected a three-letter ISO 4217 code", line, column)
    elif column == "PhoneNumber":
        if not _PHONE.match(value):
            raise CsvError(
                f"Invalid PhoneNumber {value!r}: expected '+' and 10-15 digits with country code, no spaces",
                line,
                column,
            )
    elif column in DURATIONS and not _UINT.match(value):
        raise CsvError(
            f"Invalid {column} {value!r}: expected a non-negative integer number of seconds", line, column
        )


def _row_ok(kind: str, value: str) -> bool:
    if value == "":
        return False
    if kind in ("ClientId", "Yclid"):
        return value.isascii() and value.isdigit() and len(value) <= 20
    return True


def parse_calls_csv(data: bytes, now_ts: int, client_id_type: str | None = None) -> ParsedCsv:
    """Parse and validate an upload_calls file; raise :class:`CsvError` for an invalid file."""
    if len(data) > MAX_BYTES:
        raise CsvError("File is larger than 1 GB")
    text = _decode(data)
    if not text.strip():
        raise CsvError("File is empty: the first line must hold the column names", 1)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader)
    except csv.Error as exc:
        raise CsvError(f"Malformed CSV header: {exc}", 1) from None
    seen: set[str] = set()
    keep = [i for i, name in enumerate(header) if name.strip()]  # unnamed columns are ignored
    full_width = len(header)
    header = [header[i] for i in keep]
    for name in header:
        if name not in KNOWN_COLUMNS:
            raise CsvError(f"Unknown column '{_clean(name)}'", 1, name)
        if name in seen:
            raise CsvError(f"Duplicate column {name!r}", 1, name)
        seen.add(name)
    ids = [name for name in header if name in IDENTIFIERS]
    if len(ids) != 1:
        raise CsvError(
            f"Exactly one identifier column is required: ClientId, UserId or Yclid (found {len(ids)})",
            1,
            ",".join(ids) or None,
        )
    if "DateTime" not in seen:
        raise CsvError("Required column DateTime is missing", 1, "DateTime")
    identifier = ids[0]
    kind = IDENTIFIERS[identifier]
    if client_id_type is not None and client_id_type != kind:
        raise CsvError(
            f"client_id_type={client_id_type} does not match the identifier column {identifier}",
            1,
            identifier,
        )
    parsed = ParsedCsv(columns=list(header), identifier=identifier, client_id_type=kind)
    width = full_width
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise CsvError(f"Malformed CSV: {exc}", reader.line_num) from None
        line = reader.line_num
        if not fields or (len(fields) == 1 and fields[0] == "" and width > 1):
            continue  # blank line
        if len(fields) != width:
            raise CsvError(f"Expected {width} fields, got {len(fields)}", line)
        row = dict(zip(header, (fields[i] for i in keep), strict=True))
        for column, value in row.items():
            if column != identifier:
                _check_value(column, value, line, now_ts)
        parsed.rows.append(row)
        if _row_ok(identifier, row[identifier]):
            parsed.valid_rows.append(row)
            if row.get("StaticCall") == "1":
                parsed.static_calls += 1
            else:
                parsed.dynamic_calls += 1
    return parsed
