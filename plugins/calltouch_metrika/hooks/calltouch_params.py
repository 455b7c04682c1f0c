"""Calltouch parameter mapping (pure, no I/O): snake_case keyword arguments -> the API's query parameters.

The tables live in :mod:`calltouch_metrika.constants` (``CALLS_PARAMS``, ``REQUESTS_PARAMS``); this module
validates and formats values (booleans as ``true``/``false``, attribution 0/1, enumerations, lists, times),
splits date ranges into days and resolves the site id (hook argument, else connection extra). Used by
:mod:`calltouch_metrika.hooks.calltouch`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, datetime, time, timedelta
from typing import Any

from calltouch_metrika.constants import BIND_TO_CALLS, BIND_TO_REQUESTS, FILTER_MODES, REQUESTS_PARAMS

_TIME_RE = re.compile(r"^\d{2}:\d{2}:\d{2}$")


def _as_bool(name: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower()
    raise ValueError(f"{name} must be True or False, not {value!r}")


def _as_list(name: str, value: Any) -> str:
    items = [value] if isinstance(value, str | int) else list(value)
    if not items:
        raise ValueError(f"{name} must not be empty")
    return ",".join(str(v).strip() for v in items)


def map_params(params: Mapping[str, Any], table: Mapping[str, str], *, method: str) -> dict[str, str]:
    """snake_case keyword arguments -> the API's query parameters, validated and formatted.

    :raises TypeError: for a name not in ``table``.
    :raises ValueError: for a value the API would not accept (the message names the parameter).
    """
    unknown = sorted(set(params) - set(table))
    if unknown:
        raise TypeError(
            f"{method}() got unexpected parameter(s) {', '.join(unknown)}; known: {', '.join(sorted(table))}"
        )
    bind_to_allowed = BIND_TO_REQUESTS if table is REQUESTS_PARAMS else BIND_TO_CALLS
    out: dict[str, str] = {}
    for name, value in params.items():
        if value is None:
            continue
        api_name = table[name]
        if name.startswith("with_") or name.endswith("_only"):
            out[api_name] = _as_bool(name, value)
        elif name == "attribution":
            if str(value) not in ("0", "1") or isinstance(value, bool):
                raise ValueError(
                    f"attribution must be 0 (last interaction) or 1 (last indirect), not {value!r}"
                )
            out[api_name] = str(value)
        elif name == "bind_to":
            if value not in bind_to_allowed:
                raise ValueError(f"bind_to must be one of {', '.join(bind_to_allowed)}, not {value!r}")
            out[api_name] = value
        elif name.endswith("_filter_mode"):
            if value not in FILTER_MODES:
                raise ValueError(f"{name} must be one of {', '.join(FILTER_MODES)}, not {value!r}")
            out[api_name] = value
        elif name in ("request_id", "request_number"):
            out[api_name] = _as_list(name, value)
        elif name in ("time_from", "time_to"):
            text = value.strftime("%H:%M:%S") if isinstance(value, time) else str(value)
            if not _TIME_RE.match(text):
                raise ValueError(f"{name} must be a time or 'hh:mm:ss', not {value!r}")
            out[api_name] = text
        else:
            out[api_name] = str(value)
    for mode, val in (("ani_filter_mode", "ani_value"), ("email_filter_mode", "email_value")):
        if params.get(mode) is not None and params.get(val) is None:
            raise ValueError(f"{mode} needs {val}")
    return out


def _as_date(name: str, value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip()[:10])
        except ValueError:
            pass
    raise ValueError(f"{name} must be a date or 'YYYY-MM-DD', not {value!r}")


def days(date_from: Any, date_to: Any) -> list[date]:
    """Every day of ``date_from..date_to`` inclusive (validated)."""
    start, end = _as_date("date_from", date_from), _as_date("date_to", date_to)
    if start > end:
        raise ValueError(f"date_from {start} is after date_to {end}")
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


def _site_id(value: Any, source: str) -> int:
    try:
        site = int(str(value).strip())
    except (TypeError, ValueError):
        raise ValueError(
            f"Calltouch site id from {source} must be a positive integer, not {value!r}"
        ) from None
    if site <= 0:
        raise ValueError(f"Calltouch site id from {source} must be a positive integer, not {value!r}")
    return site


def resolve_site_id(argument: Any, extra: Mapping[str, Any], conn_id: str) -> int:
    """The Calltouch site id: the hook argument ``site_id``, else the connection extra ``site_id``.

    :raises ValueError: none is set, or the value is not a positive integer (the message names its source).
    """
    if argument not in (None, ""):
        return _site_id(argument, "the hook argument site_id")
    for key in ("site_id", "extra__calltouch__site_id"):  # plain, or as an older UI form stores it
        if extra.get(key) not in (None, ""):
            return _site_id(extra[key], f"connection {conn_id!r} extra {key}")
    raise ValueError(
        f"No Calltouch site id: pass site_id= to the hook or set the extra 'site_id' of connection {conn_id!r}"
    )
