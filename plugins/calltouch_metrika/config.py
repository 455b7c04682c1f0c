"""The pipelines file (``include/config/pipelines.yaml``) as typed, validated pydantic models.

Why: every DAG is generated from this file, so a typo must not silently become a default. Every model
forbids unknown keys, and any problem raises :class:`~calltouch_metrika.exceptions.ConfigError` whose
message names the file, the pipeline and the key, e.g.::

    pipelines.yaml: pipeline 'demo': key 'counter_id': field required

Airflow shows that message as the DAG file's import error in the UI.

File shape::

    defaults:            # optional; deep-merged into every pipeline (a pipeline's own keys win)
      timezone: Europe/Moscow
    pipelines:
      - name: demo
        site_id: 10001
        counter_id: 20001
        start_date: 2026-11-01

This module is imported while DAG files are parsed: it must stay light (no pandas, no pyarrow,
no API calls, no hook import). Parameter tables come from ``constants``.
"""

from __future__ import annotations

import math
import os
import re
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from calltouch_metrika._utils import REPO_ROOT
from calltouch_metrika.constants import CALLS_DAG_PREFIX, CALLTOUCH_POOL, METRIKA_CURRENCIES
from calltouch_metrika.exceptions import ConfigError

CONFIG_ENV = "CALLTOUCH_METRIKA_CONFIG"
DATA_ENV = "CALLTOUCH_METRIKA_DATA"


def base_dir() -> Path:
    """Where the default config, plans and data live.

    In a repository checkout (``<repo>/include`` next to ``plugins/``): ``<repo>``. Installed from the
    wheel (site-packages has no ``include/``): ``$AIRFLOW_HOME/calltouch_metrika`` (``~/airflow`` when
    ``AIRFLOW_HOME`` is unset), so nothing resolves into site-packages. The variables
    ``$CALLTOUCH_METRIKA_CONFIG`` / ``$CALLTOUCH_METRIKA_DATA`` / ``$CALLTOUCH_METRIKA_PLANS_DIR`` override each.
    """
    if (REPO_ROOT / "include").is_dir() and (REPO_ROOT / "plugins" / "calltouch_metrika").is_dir():
        return REPO_ROOT
    return Path(os.environ.get("AIRFLOW_HOME") or "~/airflow").expanduser() / "calltouch_metrika"


def default_config_path() -> Path:
    """``<repo>/include/config/pipelines.yaml``, or ``$AIRFLOW_HOME/calltouch_metrika/pipelines.yaml``."""
    base = base_dir()
    return base / "include" / "config" / "pipelines.yaml" if base == REPO_ROOT else base / "pipelines.yaml"


def default_plans_dir() -> Path:
    """``<repo>/include/plans``, or ``$AIRFLOW_HOME/calltouch_metrika/plans`` when installed."""
    base = base_dir()
    return base / "include" / "plans" if base == REPO_ROOT else base / "plans"


#: Metrika links an offline call to a visit only within this many days (api-notes §3).
LINKAGE_WINDOW_DAYS = 21
#: Longest ``new_goal_name`` accepted: Metrika answers 400 to a 300-character name (issue 13); the
#: docs give no figure, so the cap is the one documented for the upload ``comment`` (api-notes §3.2).
MAX_GOAL_NAME = 255
#: Largest fixed price per call accepted (a typo guard: 1e20 RUB per call is never meant).
MAX_PRICE = 1_000_000_000
#: Smallest fixed price per call: the CSV carries kopecks (two decimals), so less would upload 0.00.
MIN_PRICE = 0.01
#: Earliest and latest ``start_date`` accepted: outside, a date is a typo (``0001-01-01``, ``2999-...``)
#: and Airflow cannot even build the DAG (OverflowError at 0001-01-01 in zones east of UTC).
MIN_START_DATE = date(2000, 1, 1)
MAX_START_DATE = date(2099, 12, 31)
#: Airflow's limit on a DAG tag (``airflow.models.dag.TAG_MAX_LEN``): a longer tag fails the DAG file.
MAX_TAG_LENGTH = 100
#: Connection ids and pool names Airflow accepts (letters, digits, ``_ . -``; ``airflow.utils.helpers``).
_AIRFLOW_ID = r"^[A-Za-z0-9_.\-]{1,250}$"
#: Calls columns (or ``<URL column>?<param>``) each Metrika identifier may come from: a ClientId is
#: Metrika's own visitor id (``yaClientId``), a UserId the site's user id, a Yclid a click id found
#: in a URL. A column of another meaning (``callId``, ``timestamp``, ``duration``) would upload
#: well-formed but wrong identifiers, so it is refused.
URL_COLUMNS = ("url", "callUrl", "ref")
IDENTIFIER_FIELDS: dict[str, tuple[str, ...]] = {
    "ClientId": ("yaClientId",),
    "UserId": (
        "yaClientId",
        "clientId",
        "ctClientId",
        "ctGlobalId",
        "ctCallerId",
        "sessionId",
        "callerNumber",
    ),
    "Yclid": (),
}
#: Where plan files named without a directory live (same rule as the plans operator).
PLANS_DIR_ENV = "CALLTOUCH_METRIKA_PLANS_DIR"
#: Calls columns that can hold a visitor identifier (strings and integers of the calls table,
#: ``transforms/records.py``; a test keeps the two lists equal). ``"<column>?<param>"`` takes a
#: query parameter of a URL column.
CALLS_COLUMNS: tuple[str, ...] = (
    "callId", "timestamp", "duration", "waitingConnect", "sessionId", "ctClientId", "siteId",
    "attribution", "date", "sessionDate", "callerNumber", "phoneNumber", "redirectNumber",
    "yaClientId", "clientId", "ctCallerId", "ctGlobalId", "sipCallId", "callReferenceId",
    "callphase", "manager", "subPoolName", "statusDetails", "source", "medium", "keyword", "city",
    "hostname", "ref", "url", "callUrl", "utmSource", "utmMedium", "utmCampaign", "utmContent",
    "utmTerm", "userAgent", "ip", "device", "os", "browser", "siteName",
)  # fmt: skip


class ConfigWarning(UserWarning):
    """A valid but suspicious setting (e.g. a ``start_date`` long before Metrika's linkage window)."""


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def config_path() -> Path:
    """Where the pipelines file is: ``$CALLTOUCH_METRIKA_CONFIG``, else :func:`default_config_path`."""
    env = os.environ.get(CONFIG_ENV)
    if env:
        return Path(env).expanduser()
    return default_config_path()


def default_storage_root() -> str:
    """The default storage root: ``$CALLTOUCH_METRIKA_DATA``, else ``<repo>/data`` (checkout) or
    ``$AIRFLOW_HOME/calltouch_metrika/data`` (installed; :func:`base_dir`)."""
    return os.environ.get(DATA_ENV) or str(base_dir() / "data")


def expand_env(value: str) -> str:
    """Expand ``${VAR}`` and ``${VAR:-default}``; an unset variable without a default is an error."""

    def _sub(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        raise ValueError(f"environment variable {name!r} is not set (referenced as ${{{name}}})")

    return _ENV_REF.sub(_sub, value)


class _Strict(BaseModel):
    #: strict: ``true`` is not 1 and ``"3"`` is not 3 (``site_id: true`` used to become site 1).
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]")


def _check_text(v: str, what: str) -> str:
    """A name shown to people: not blank, no control or invisible characters."""
    if not v.strip():
        raise ValueError(f"{what} is blank")
    bad = _CONTROL.search(v)
    if bad:
        raise ValueError(f"{what} contains the control/invisible character U+{ord(bad.group()):04X}")
    if v != v.strip():
        raise ValueError(f"{what} {v!r} starts or ends with spaces")
    return v


class Identifier(_Strict):
    """Which Metrika identifier column the CSV carries and which Calltouch call field feeds it."""

    type: Literal["ClientId", "UserId", "Yclid"] = "ClientId"
    field: str | None = None

    @model_validator(mode="after")
    def _default_field(self) -> Identifier:
        if self.field is None:
            if self.type != "ClientId":
                raise ValueError(f"'field' is required when type is {self.type} (the call field holding it)")
            object.__setattr__(self, "field", "yaClientId")
        column, _, param = str(self.field).partition("?")
        if column not in CALLS_COLUMNS:
            raise ValueError(
                f"field {self.field!r}: {column!r} is not a calls column (one of {', '.join(CALLS_COLUMNS)})"
            )
        if "?" in str(self.field) and not re.fullmatch(r"[A-Za-z0-9_.\-]+", param):
            raise ValueError(f"field {self.field!r}: bad query parameter name {param!r}")
        allowed = IDENTIFIER_FIELDS[self.type]
        if "?" in str(self.field):
            if column not in URL_COLUMNS:
                raise ValueError(
                    f"field {self.field!r}: a query parameter is taken from a URL column "
                    f"({', '.join(URL_COLUMNS)}), not {column!r}"
                )
        elif column not in allowed:
            choices = [*allowed, *(f"{c}?<param>" for c in URL_COLUMNS)]
            raise ValueError(
                f"field {self.field!r} cannot hold a {self.type}: {column!r} means something else; "
                f"use one of {', '.join(choices)}"
            )
        return self


_YAML12_EXP_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)[eE][-+]?[0-9]+")


class Price(_Strict):
    """The call's value: none, a fixed price per call, or the sum of the call's orders."""

    mode: Literal["none", "fixed", "orders"] = "none"
    value: float | None = None
    currency: str = "RUB"

    @field_validator("currency")
    @classmethod
    def _iso_currency(cls, v: str) -> str:
        if v not in METRIKA_CURRENCIES:
            raise ValueError(
                f"currency {v!r} is not an ISO 4217 code Metrika accepts (e.g. RUB, USD, EUR; seed 000)"
            )
        return v

    @field_validator("value", mode="before")
    @classmethod
    def _number(cls, v: Any) -> Any:
        if isinstance(v, str) and _YAML12_EXP_FLOAT.fullmatch(v.strip()):
            return float(v)  # ``1e20``: a number in YAML 1.2, text for PyYAML (it wants ``1.0e20``)
        if isinstance(v, bool) or (v is not None and not isinstance(v, int | float)):
            hint = " (quoted: write it without quotes)" if isinstance(v, str) else ""
            raise ValueError(f"value must be a number, got {v!r}{hint}")
        return v

    @model_validator(mode="after")
    def _value_for_fixed(self) -> Price:
        if self.mode == "fixed" and (self.value is None or not math.isfinite(self.value) or self.value <= 0):
            raise ValueError("mode 'fixed' needs a positive 'value'")
        if self.mode == "fixed" and self.value is not None and self.value > MAX_PRICE:
            raise ValueError(f"value {self.value:g} is more than {MAX_PRICE:,} per call: check the number")
        if self.mode == "fixed" and self.value is not None and self.value < MIN_PRICE:
            raise ValueError(f"value {self.value:g} is less than {MIN_PRICE} (it would be uploaded as 0.00)")
        if self.mode == "fixed" and self.value is not None and abs(round(self.value, 2) - self.value) > 1e-9:
            raise ValueError(
                f"value {self.value!r} has more than two decimals; the upload carries {round(self.value, 2):.2f}"
            )
        if self.mode != "fixed" and self.value is not None:
            raise ValueError(f"'value' is only used with mode 'fixed' (mode is {self.mode!r})")
        return self


class CallTags(_Strict):
    """Whether call tag names go to the CSV's ``Tag`` column."""

    enabled: bool = True


_CRON_DAILY = re.compile(r"^\s*(\d{1,2})\s+(\d{1,2})\s+\*\s+\*\s+\*\s*$")


def cron_time_of_day(cron: str) -> str:
    """``"HH:MM"`` from a daily cron ``"M H * * *"`` (or ``@daily`` / ``@midnight``).

    The pipelines file keeps its ``schedule: "0 5 * * *"`` meaning "the day's run starts at 05:00
    the next morning"; any other cron (several times a day, weekdays only, ...) has no meaning for
    a one-run-per-day pipeline.

    :raises ValueError: the expression is not "a time of day, every day".
    """
    if cron.strip() in ("@daily", "@midnight"):
        return "00:00"
    m = _CRON_DAILY.match(cron)
    if not m or int(m.group(1)) > 59 or int(m.group(2)) > 23:
        raise ValueError(
            f"schedule {cron!r} is not a daily cron 'M H * * *' (a time of day, every day): each run "
            "processes one whole local day, so the schedule only says when it starts the next morning, "
            "e.g. '0 5 * * *' = 05:00 local time"
        )
    return f"{int(m.group(2)):02d}:{int(m.group(1)):02d}"


def _check_cron(v: str) -> str:
    """A daily ``"M H * * *"``: each run is one local day, the schedule only says when it starts."""
    cron_time_of_day(v)
    return v


def _check_hook_params(params: dict[str, Any], table_name: str) -> dict[str, Any]:
    """Check Calltouch parameter names (snake_case) and the values of the typed ones.

    Flags (``with_*``, ``*_only``) are booleans, ``attribution`` is 0 or 1, ``bind_to`` and
    ``*_filter_mode`` are enumerations (seeds 003, 004); the hook maps the rest as given.
    """
    from calltouch_metrika import constants  # tables only: no hook import at parse time

    table = getattr(constants, table_name)
    bind_to = constants.BIND_TO_REQUESTS if table_name == "REQUESTS_PARAMS" else constants.BIND_TO_CALLS
    unknown = sorted(set(params) - set(table))
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown}; known: {sorted(table)}")
    for name, value in params.items():
        if value is None:
            continue
        if name.startswith("with_") or name.endswith("_only"):
            if not isinstance(value, bool):
                raise ValueError(f"{name}: must be true or false, got {value!r}")
        elif name == "attribution":
            if isinstance(value, bool) or str(value) not in ("0", "1"):
                raise ValueError(
                    f"attribution: must be 0 (last interaction) or 1 (last indirect), got {value!r}"
                )
        elif name == "bind_to":
            if value not in bind_to:
                raise ValueError(f"bind_to: must be one of {', '.join(bind_to)}, got {value!r}")
        elif name.endswith("_filter_mode") and value not in constants.FILTER_MODES:
            raise ValueError(f"{name}: must be one of {', '.join(constants.FILTER_MODES)}, got {value!r}")
    return params


def plans_dir() -> Path:
    """Where bare plan file names live: ``$CALLTOUCH_METRIKA_PLANS_DIR``, else ``<repo>/include/plans``."""
    env = os.environ.get(PLANS_DIR_ENV)
    return Path(env).expanduser() if env else REPO_ROOT / "include" / "plans"


class RequestsExport(_Strict):
    """The requests (заявки) journal export for this pipeline's site (another DAG file uses it)."""

    enabled: bool = False
    schedule: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("schedule")
    @classmethod
    def _cron(cls, v: str | None) -> str | None:
        return None if v is None else _check_cron(v)

    @field_validator("params")
    @classmethod
    def _params(cls, v: dict[str, Any]) -> dict[str, Any]:
        return _check_hook_params(v, "REQUESTS_PARAMS")


class Notify(_Strict):
    """E-mail notifications of one pipeline (:mod:`calltouch_metrika.notifications`, SMTP provider).

    ``on``: ``failure`` (any task failure), ``linkage_failure`` (Metrika linked no call of the day's
    upload), ``rejects_over: <percent>`` (more than that share of the day's calls rejected), e.g.
    ``on: [failure, {rejects_over: 20}]``; ``conn_id``: an ``smtp`` connection; ``to``: recipients.
    """

    conn_id: str = "smtp_default"
    to: list[str] = Field(min_length=1)
    from_email: str | None = None
    on: list[Literal["failure", "linkage_failure"] | dict[Literal["rejects_over"], float]] = Field(
        default_factory=lambda: ["failure"], min_length=1
    )

    @field_validator("on")
    @classmethod
    def _percent(cls, v: list[Any]) -> list[Any]:
        for item in v:
            if isinstance(item, dict) and not 0 <= item["rejects_over"] <= 100:
                raise ValueError("rejects_over is a percentage of the day's calls: 0 to 100")
        return v

    @property
    def events(self) -> list[str]:
        """The event names of ``on`` (``rejects_over`` for the dict form)."""
        return [e if isinstance(e, str) else "rejects_over" for e in self.on]

    @property
    def rejects_over_percent(self) -> float | None:
        """The ``rejects_over`` limit, if set."""
        return next((e["rejects_over"] for e in self.on if isinstance(e, dict)), None)


def _relative_start_date(v: Any) -> Any:
    """``start_date: -7`` (an integer <= 0): that many days before today; else the value unchanged."""
    if isinstance(v, int) and not isinstance(v, bool):
        if v > 0:
            raise ValueError(
                "a relative start_date is a number of days back from today: 0 or negative, e.g. -7"
            )
        return date.today() + timedelta(days=v)
    return v


class Pipeline(_Strict):
    """One Calltouch site feeding one Metrika counter: becomes DAG ``calltouch_calls_to_metrika__<name>``."""

    name: str = Field(pattern=r"^[a-z0-9_]+$", max_length=64)
    calltouch_conn_id: str = Field(default="calltouch_default", pattern=_AIRFLOW_ID)
    site_id: int = Field(gt=0, strict=True)
    metrika_conn_id: str = Field(default="metrika_default", pattern=_AIRFLOW_ID)
    counter_id: int = Field(gt=0, strict=True)
    timezone: str = "Europe/Moscow"
    schedule: str = "0 5 * * *"
    start_date: date
    identifier: Identifier = Field(default_factory=Identifier)
    filters: dict[str, Any] = Field(default_factory=dict)
    price: Price = Field(default_factory=Price)
    tags: CallTags = Field(default_factory=CallTags)
    new_goal_name: str | None = Field(default=None, min_length=1, max_length=MAX_GOAL_NAME)
    on_linkage_failure: Literal["fail", "warn"] = "fail"
    storage_root: str = Field(default_factory=default_storage_root)
    hash_phone_numbers: bool = False
    max_active_runs: int = Field(default=3, ge=1, le=32)
    retries: int = Field(default=2, ge=0, le=20)
    owner: str = Field(default="calltouch-metrika", min_length=1, max_length=500)
    dag_tags: list[str] = Field(default_factory=lambda: ["calltouch", "metrika"], max_length=50)
    #: Pipelines naming one account are extracted together: one task per local day (DAG
    #: ``calltouch_account_extract__<account>``) reads all their sites; they must share the Calltouch
    #: connection, time zone and schedule. Their own extract then waits for it (``account_wait_minutes``).
    account: str | None = Field(default=None, pattern=r"^[a-z0-9_]+$", max_length=64)
    account_wait_minutes: float = Field(default=60.0, ge=0, le=24 * 60)
    #: Airflow pool the tasks that call Calltouch run in: it bounds how many wait on Calltouch's 5
    #: requests/s at once (4 slots with a shared rate-limit backend; 1 slot without one: README).
    #: The pool must exist (`make up` and docker compose create it); set null to run without one.
    pool: str | None = Field(default=CALLTOUCH_POOL, pattern=_AIRFLOW_ID)
    #: Each run also re-reads this many local days before the day it sends, and uploads calls that
    #: arrived late (not yet in the counter's ledger); each extra day costs ceil(calls/1000) requests.
    lookback_days: int = Field(default=2, ge=0, le=20)
    #: The run of local day D sends day D - settle_days (manager tags and deals settle); 0 = at once.
    settle_days: int = Field(default=0, ge=0, le=20)
    status_poll_seconds: float = Field(default=5.0, ge=0.1, le=3600)
    status_timeout_hours: float = Field(default=24.0, gt=0, le=168)
    plans_file: str | None = None
    requests_export: RequestsExport | None = None
    notify: Notify | None = None

    @field_validator("start_date", mode="before")
    @classmethod
    def _start(cls, v: Any) -> Any:
        return _relative_start_date(v)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        import pendulum

        try:
            pendulum.timezone(v)
        except Exception as exc:
            raise ValueError(f"unknown time zone {v!r} (use an IANA name such as Europe/Moscow)") from exc
        return v

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, v: str) -> str:
        return _check_cron(v)

    @field_validator("start_date", mode="before")
    @classmethod
    def _start_date(cls, v: Any) -> Any:
        # YAML dates reach us as text (no implicit timestamps): parse them here, strictly ISO.
        if isinstance(v, str):
            try:
                v = date.fromisoformat(v.strip())
            except ValueError as exc:
                raise ValueError(f"start_date {v!r} is not a date YYYY-MM-DD ({exc})") from None
        if isinstance(v, date) and not MIN_START_DATE <= v <= MAX_START_DATE:
            raise ValueError(f"start_date {v} is outside {MIN_START_DATE}..{MAX_START_DATE}: check the year")
        return v

    @field_validator("dag_tags")
    @classmethod
    def _tags(cls, v: list[str]) -> list[str]:
        for tag in v:
            _check_text(tag, "a tag")
            if len(tag) > MAX_TAG_LENGTH:
                raise ValueError(
                    f"tag {tag[:20]!r}... is {len(tag)} characters; Airflow allows {MAX_TAG_LENGTH}"
                )
        return v

    @field_validator("owner")
    @classmethod
    def _owner(cls, v: str) -> str:
        return _check_text(v, "owner")

    @field_validator("new_goal_name")
    @classmethod
    def _goal(cls, v: str | None) -> str | None:
        return None if v is None else _check_text(v, "new_goal_name")

    @field_validator("storage_root")
    @classmethod
    def _root(cls, v: str) -> str:
        v = expand_env(v).strip()
        if not v:
            raise ValueError("storage_root is empty")
        protocol = v.partition("::")[0].split("://", 1)[0] if "://" in v else None
        if protocol is not None:
            import fsspec  # light: Airflow imports it anyway

            known = set(fsspec.available_protocols())
            if protocol not in known:
                raise ValueError(
                    f"storage_root {v!r}: unknown protocol {protocol!r} (fsspec knows e.g. file, s3, gcs, "
                    "abfs, sftp; install the filesystem's package if it is a real one)"
                )
        return v

    @field_validator("filters")
    @classmethod
    def _filters(cls, v: dict[str, Any]) -> dict[str, Any]:
        return _check_hook_params(v, "CALLS_PARAMS")

    @model_validator(mode="after")
    def _within_linkage_window(self) -> Pipeline:
        if self.settle_days + self.lookback_days > 20:
            raise ValueError(
                f"settle_days ({self.settle_days}) + lookback_days ({self.lookback_days}) must be at most 20: "
                "Metrika links calls at most 21 days back"
            )
        return self

    @field_validator("plans_file")
    @classmethod
    def _plans_file(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if "://" in v or "/" in v or "\\" in v or v in (".", "..") or v.startswith("~") or not v.strip():
            raise ValueError(
                f"plans_file {v!r} must be a plain file name inside the plans directory ({plans_dir()}), "
                "e.g. plans_12345.csv"
            )
        p = plans_dir() / v
        if not p.is_file():
            raise ValueError(f"plan file {v!r} does not exist (looked for {p})")
        return v

    @property
    def schedule_at(self) -> str:
        """When the run of day D starts on D+1, ``"HH:MM"`` local time (from ``schedule``)."""
        return cron_time_of_day(self.schedule)

    def start_date_warning(self, today: date | None = None) -> str | None:
        """A warning when ``start_date`` lies before Metrika's linkage window, else None."""
        today = today or date.today()
        before = (today - self.start_date).days - LINKAGE_WINDOW_DAYS
        if self.start_date > today:
            return (
                f"start_date {self.start_date} is in the future ({(self.start_date - today).days} day(s) from "
                f"today): the DAG runs nothing until the day after it"
            )
        if before <= 0:
            return None
        return (
            f"start_date {self.start_date} is {before} day(s) before Metrika's {LINKAGE_WINDOW_DAYS}-day "
            f"linkage window (it starts {today.fromordinal(today.toordinal() - LINKAGE_WINDOW_DAYS)}): "
            "calls of those days are extracted and uploaded but cannot be linked to visits; "
            "set a recent start_date"
        )

    @property
    def dag_id(self) -> str:
        """The id of the calls DAG built for this pipeline."""
        return f"{CALLS_DAG_PREFIX}{self.name}"


class PipelinesConfig(_Strict):
    """The whole file: the list of pipelines (names unique)."""

    pipelines: list[Pipeline] = Field(default_factory=list)

    def get_pipeline(self, name: str) -> Pipeline:
        """The pipeline called ``name``; :class:`ConfigError` if there is none."""
        for p in self.pipelines:
            if p.name == name:
                return p
        raise ConfigError(f"no pipeline named {name!r}; configured: {[p.name for p in self.pipelines]}")


#: Names of :mod:`calltouch_metrika.config_file` (reading the file) served from here too.
_FILE_NAMES = frozenset(
    {"counter_overlaps", "ConfigReport", "read_config", "load_config", "load_valid_config"}
)


def __getattr__(name: str) -> Any:
    """``from calltouch_metrika.config import read_config`` (and the rest of :data:`_FILE_NAMES`):
    the reading half lives in ``config_file``, imported on first use (it imports this module)."""
    if name in _FILE_NAMES:
        from calltouch_metrika import config_file

        return getattr(config_file, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
