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
no API calls). The Calltouch hook module is imported lazily only to check filter names.
"""

from __future__ import annotations

import os
import re
from datetime import date
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from calltouch_metrika._utils import REPO_ROOT
from calltouch_metrika.constants import CALLTOUCH_POOL
from calltouch_metrika.exceptions import ConfigError

CONFIG_ENV = "CALLTOUCH_METRIKA_CONFIG"
DATA_ENV = "CALLTOUCH_METRIKA_DATA"


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def config_path() -> Path:
    """Where the pipelines file is: ``$CALLTOUCH_METRIKA_CONFIG``, else ``<repo>/include/config/pipelines.yaml``."""
    env = os.environ.get(CONFIG_ENV)
    if env:
        return Path(env).expanduser()
    return REPO_ROOT / "include" / "config" / "pipelines.yaml"


def default_storage_root() -> str:
    """The default storage root: ``$CALLTOUCH_METRIKA_DATA``, else ``<repo>/data``."""
    return os.environ.get(DATA_ENV) or str(REPO_ROOT / "data")


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
    model_config = ConfigDict(extra="forbid", frozen=True)


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
        return self


class Price(_Strict):
    """The call's value: none, a fixed price per call, or the sum of the call's orders."""

    mode: Literal["none", "fixed", "orders"] = "none"
    value: float | None = None
    currency: str = "RUB"

    @field_validator("currency")
    @classmethod
    def _iso_currency(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Z]{3}", v):
            raise ValueError(f"currency must be an ISO 4217 code such as RUB, got {v!r}")
        return v

    @model_validator(mode="after")
    def _value_for_fixed(self) -> Price:
        if self.mode == "fixed" and (self.value is None or self.value <= 0):
            raise ValueError("mode 'fixed' needs a positive 'value'")
        if self.mode != "fixed" and self.value is not None:
            raise ValueError(f"'value' is only used with mode 'fixed' (mode is {self.mode!r})")
        return self


class CallTags(_Strict):
    """Whether call tag names go to the CSV's ``Tag`` column."""

    enabled: bool = True


def _check_cron(v: str) -> str:
    from croniter import croniter

    if not croniter.is_valid(v):
        raise ValueError(f"not a valid cron expression: {v!r}")
    return v


def _check_hook_params(params: dict[str, Any], table_name: str) -> dict[str, Any]:
    """Check snake_case Calltouch parameter names against the hook's public mapping table."""
    try:
        from calltouch_metrika import constants as ct_hooks  # tables only: no hook import at parse time
    except ImportError:  # pragma: no cover - the hook module is part of the package
        return params
    table = getattr(ct_hooks, table_name, None)
    if table is None:  # pragma: no cover
        return params
    unknown = sorted(set(params) - set(table))
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown}; known: {sorted(table)}")
    return params


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


class Pipeline(_Strict):
    """One Calltouch site feeding one Metrika counter: becomes DAG ``calltouch_calls_to_metrika__<name>``."""

    name: str = Field(pattern=r"^[a-z0-9_]+$", max_length=64)
    calltouch_conn_id: str = "calltouch_default"
    site_id: int = Field(gt=0)
    metrika_conn_id: str = "metrika_default"
    counter_id: int = Field(gt=0)
    timezone: str = "Europe/Moscow"
    schedule: str = "0 5 * * *"
    start_date: date
    identifier: Identifier = Field(default_factory=Identifier)
    filters: dict[str, Any] = Field(default_factory=dict)
    price: Price = Field(default_factory=Price)
    tags: CallTags = Field(default_factory=CallTags)
    new_goal_name: str | None = None
    on_linkage_failure: Literal["fail", "warn"] = "fail"
    storage_root: str = Field(default_factory=default_storage_root)
    hash_phone_numbers: bool = False
    max_active_runs: int = Field(default=3, ge=1, le=32)
    retries: int = Field(default=2, ge=0, le=20)
    owner: str = "calltouch-metrika"
    dag_tags: list[str] = Field(default_factory=lambda: ["calltouch", "metrika"])
    #: Airflow pool the tasks that call Calltouch run in, so that several workers together stay under
    #: Calltouch's 5 requests/s (each task's hook already uses the whole limit: give the pool 1 slot).
    #: The pool must exist (`make up` and docker compose create it); set null to run without one.
    pool: str | None = CALLTOUCH_POOL
    status_poll_seconds: float = Field(default=5.0, gt=0, le=3600)
    status_timeout_hours: float = Field(default=24.0, gt=0, le=168)
    plans_file: str | None = None
    requests_export: RequestsExport | None = None

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

    @field_validator("storage_root")
    @classmethod
    def _root(cls, v: str) -> str:
        v = expand_env(v).strip()
        if not v:
            raise ValueError("storage_root is empty")
        return v

    @field_validator("filters")
    @classmethod
    def _filters(cls, v: dict[str, Any]) -> dict[str, Any]:
        return _check_hook_params(v, "CALLS_PARAMS")

    @property
    def dag_id(self) -> str:
        """The id of the calls DAG built for this pipeline."""
        return f"calltouch_calls_to_metrika__{self.name}"


class PipelinesConfig(_Strict):
    """The whole file: the list of pipelines (names unique)."""

    pipelines: list[Pipeline] = Field(default_factory=list)

    def get_pipeline(self, name: str) -> Pipeline:
        """The pipeline called ``name``; :class:`ConfigError` if there is none."""
        for p in self.pipelines:
            if p.name == name:
                return p
        raise ConfigError(f"no pipeline named {name!r}; configured: {[p.name for p in self.pipelines]}")


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def _format_error(file: str, pipeline: str | None, exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(pipeline)"
        msg = err["msg"]
        if err["type"] == "missing":
            msg = "field required"
        elif err["type"] == "extra_forbidden":
            msg = "unknown key (not allowed; check the spelling)"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        where = f"pipeline {pipeline!r}: " if pipeline else ""
        lines.append(f"{file}: {where}key {loc!r}: {msg}")
    return "\n".join(lines)


def load_config(path: str | os.PathLike[str] | None = None) -> PipelinesConfig:
    """Read and validate the pipelines file (default :func:`config_path`).

    :raises ConfigError: the file is missing, not YAML, or invalid; the message names the file,
        the pipeline and the key.
    """
    p = Path(path) if path is not None else config_path()
    fname = p.name
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read the pipelines file ({exc.strerror or exc})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{fname}: not valid YAML: {exc}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{fname}: the top level must be a mapping with 'pipelines:' (and optional 'defaults:')"
        )
    unknown = sorted(set(raw) - {"defaults", "pipelines"})
    if unknown:
        raise ConfigError(f"{fname}: unknown top-level key(s) {unknown}; expected 'defaults' and 'pipelines'")
    defaults = raw.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise ConfigError(f"{fname}: key 'defaults': must be a mapping")
    items = raw.get("pipelines") or []
    if not isinstance(items, list):
        raise ConfigError(f"{fname}: key 'pipelines': must be a list of pipelines")

    pipelines: list[Pipeline] = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise ConfigError(f"{fname}: pipelines[{i}]: must be a mapping, got {type(item).__name__}")
        name = item.get("name")
        label = str(name) if name is not None else f"#{i + 1}"
        try:
            pipeline = Pipeline.model_validate(_deep_merge(defaults, item))
        except ValidationError as exc:
            raise ConfigError(_format_error(fname, label, exc)) from None
        if pipeline.name in seen:
            raise ConfigError(f"{fname}: pipeline {pipeline.name!r}: key 'name': duplicate pipeline name")
        seen.add(pipeline.name)
        pipelines.append(pipeline)
    return PipelinesConfig(pipelines=pipelines)
