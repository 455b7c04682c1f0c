"""Small helpers several modules share: the repository root, reading rendered template values, and the
default of ``deferrable`` (:func:`default_deferrable`, read from Airflow's configuration).

Operators receive ``template_fields`` as strings once Jinja has rendered them (``"{{ params.dry_run }}"``
becomes ``"False"``), so flags and dates are read back here, once, with errors naming the field.
No I/O; Airflow only inside :func:`default_deferrable`.
"""

from __future__ import annotations

import os
from datetime import date, datetime
from pathlib import Path
from typing import Any

__all__ = ["REPO_ROOT", "as_bool", "as_date"]

#: The repository root: ``plugins/calltouch_metrika/_utils.py`` -> ``<repo>`` (``include/``, ``data/`` live there).
REPO_ROOT = Path(__file__).resolve().parents[2]

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off", "", "none"})


def as_bool(value: Any, what: str = "value") -> bool:
    """A bool from a bool, None (false) or a rendered template (``"True"``, ``"false"``, ``"1"``, ``""``).

    :param what: the field's name, for the error message.
    :raises ValueError: ``"{what} must be true or false, got {value!r}"`` for anything else (``"maybe"``).
    """
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{what} must be true or false, got {value!r}")


def as_date(value: Any, what: str) -> date:
    """A ``date`` from a date, a datetime or an ISO ``YYYY-MM-DD`` string (rendered templates are strings).

    :param what: the field's name, for the error message.
    :raises ValueError: ``"{what} must be a date like 2026-11-24, got {value!r}"``.
    """
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value).strip()[:10])
    except ValueError:
        raise ValueError(f"{what} must be a date like 2026-11-24, got {value!r}") from None


_SECTION, _KEY = "operators", "default_deferrable"


def default_deferrable() -> bool:
    """``AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE`` (or its ``_CMD``/``_SECRET`` forms) when set, else True.

    Read when the sensor class is defined, like the providers' ``deferrable=conf.getboolean(...)``
    defaults. Airflow's built-in default (``false``) is not a user's choice, and neither is the
    ``default_deferrable = false`` line Airflow writes into every ``airflow.cfg`` it generates (seen
    under ``make up`` and the e2e stack): a ``false`` there cannot be told from an untouched file, so
    only ``true`` is taken from ``airflow.cfg``. To make the sensors poke instead, set the environment
    variable to ``false`` or pass ``deferrable=False`` to the sensor.
    """
    from airflow.sdk.configuration import conf

    env = f"AIRFLOW__{_SECTION.upper()}__{_KEY.upper()}"
    if any(name in os.environ for name in (env, f"{env}_CMD", f"{env}_SECRET")):
        return conf.getboolean(_SECTION, _KEY, fallback=True)
    return True
