"""Reading ids out of paths, headers and query strings without ever raising.

``str.isdigit`` is true for "²" and "١", which ``int`` refuses (or reads as 1), and ``int`` refuses more
than 4300 digits: a check with ``isdigit`` then ``int`` answered such odd ids with a 500. An id here is
1-18 ASCII digits (it fits a signed 64-bit integer, as the APIs' ids do); anything else is "no such id".
"""

from __future__ import annotations

import re

_ID = re.compile(r"[0-9]{1,18}")


def parse_id(raw: str | None) -> int | None:
    """``raw`` as an int when it is 1-18 ASCII digits, else None (never raises)."""
    return int(raw) if raw is not None and _ID.fullmatch(raw) else None


#: Authorization schemes Metrika's token travels in (compared case-insensitively, RFC 7235 §2.1). Metrika
#: documents ``OAuth`` only; ``Bearer`` is the sandbox's choice (sandbox/README.md, "Metrika auth").
METRIKA_SCHEMES = ("oauth", "bearer")


def metrika_token(header: str | None) -> str:
    """The token of an ``Authorization: OAuth <token>`` header (any case; or ``Bearer``); "" when none."""
    parts = (header or "").split(None, 1)
    if len(parts) != 2 or parts[0].lower() not in METRIKA_SCHEMES:
        return ""
    return parts[1].strip()
