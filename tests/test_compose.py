"""docker-compose.yaml, Dockerfile and .env.example, checked without a Docker engine.

The compose file follows the official Airflow 3.3 one; what 3.3 needs (one JWT secret, the execution
API URL, a real Fernet key) and what we add (include/ and data/ volumes, the connections, the sandbox)
must be set once, in ``x-airflow-common``: a service-level ``environment:`` or ``volumes:`` replaces
the anchor's instead of merging with it, which silently drops settings.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
COMPOSE = REPO / "docker-compose.yaml"

#: Every service of the official Airflow 3.3 docker-compose.yaml.
OFFICIAL_SERVICES = {
    "postgres",
    "redis",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-worker",
    "airflow-triggerer",
    "airflow-init",
    "airflow-cli",
    "flower",
}
AIRFLOW_SERVICES = OFFICIAL_SERVICES - {"postgres", "redis"}

#: Settings every Airflow process must share, so they belong to x-airflow-common only.
SHARED_SETTINGS = (
    "AIRFLOW__CORE__EXECUTOR",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
    "AIRFLOW__CORE__FERNET_KEY",
    "AIRFLOW__API_AUTH__JWT_SECRET",
    "AIRFLOW__API__SECRET_KEY",
    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
    "AIRFLOW__CORE__LOAD_EXAMPLES",
    "CALLTOUCH_METRIKA_CONFIG",
    "CALLTOUCH_METRIKA_DATA",
    "AIRFLOW__CORE__TEST_CONNECTION",
    "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE",
)

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``, ``${VAR:?error}`` and ``$$``."""

    def sub(m: re.Match[str]) -> str:
        name, op, arg = m.group(1), m.group(2), m.group(3)
        val = env.get(name)
        if op == ":-":
            return val if val else arg
        if op == "-":
            return val if val is not None else arg
        if op == ":?":
            if not val:
                raise KeyError(f"{name}: {arg}")
            return val
        return val or ""

    return _VAR.sub(sub, value.replace("$$", "\0")).replace("\0", "$")


@pytest.fixture(scope="module")
def text() -> str:
    return COMPOSE.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def compose(text: str) -> dict[str, Any]:
    doc = yaml.safe_load(text)
    assert isinstance(doc, dict) and "services" in doc
    return doc


@pytest.fixture(scope="module")
def common_env(compose: dict[str, Any]) -> dict[str, str]:
    return compose["x-airflow-common"]["environment"]


def test_every_official_service_and_the_sandbox_are_there(compose: dict[str, Any]) -> None:
    services = set(compose["services"])
    assert services >= OFFICIAL_SERVICES, f"missing: {sorted(OFFICIAL_SERVICES - services)}"
    assert "sandbox" in services
    commands = {name: compose["services"][name].get("command") for name in AIRFLOW_SERVICES}
    assert commands["airflow-apiserver"] == "api-server"
    assert commands["airflow-scheduler"] == "scheduler"
    assert commands["airflow-dag-processor"] == "dag-processor"
    assert commands["airflow-triggerer"] == "triggerer"
    assert commands["airflow-worker"] == "celery worker"
    assert compose["x-airflow-common"]["environment"]["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"


def test_airflow_services_are_built_from_this_repository(compose: dict[str, Any]) -> None:
    common = compose["x-airflow-common"]
    assert common["build"] == "."
    for name in AIRFLOW_SERVICES:
        service = compose["services"][name]
        assert service["build"] == "." and service["image"] == common["image"], name


@pytest.mark.parametrize("key", SHARED_SETTINGS)
def test_shared_settings_are_set_once_in_the_common_block(
    key: str, text: str, compose: dict[str, Any], common_env: dict[str, str]
) -> None:
    assert key in common_env, f"{key} is not in x-airflow-common.environment"
    definitions = re.findall(rf"^\s+{re.escape(key)}\s*:", text, flags=re.MULTILINE)
    assert len(definitions) == 1, f"{key} is set {len(definitions)} times; set it once, in x-airflow-common"
    # Every Airflow service sees it: a service-level environment must merge the anchor, not replace it.
    for name in AIRFLOW_SERVICES:
        env = compose["services"][name].get("environment", {})
        assert env.get(key) == common_env[key], f"{name} does not get {key} from x-airflow-common"


def test_the_secrets_3_3_needs_are_required_not_defaulted(common_env: dict[str, str]) -> None:
    for key, var in (
        ("AIRFLOW__CORE__FERNET_KEY", "FERNET_KEY"),
        ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__API_AUTH__JWT_SECRET"),
        ("AIRFLOW__API__SECRET_KEY", "AIRFLOW__API__SECRET_KEY"),
    ):
        with pytest.raises(KeyError, match=var):
            interpolate(common_env[key], {})
        assert interpolate(common_env[key], {var: "s3cr3t"}) == "s3cr3t"


def test_execution_api_url_points_at_the_api_server(
    compose: dict[str, Any], common_env: dict[str, str]
) -> None:
    url = urlsplit(common_env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
    assert url.hostname == "airflow-apiserver" and url.path == "/execution/"
    published = compose["services"]["airflow-apiserver"]["ports"]
    assert any(str(p).endswith(f":{url.port}") for p in published), published


def test_volumes_include_dags_plugins_include_and_data_in_the_common_block(compose: dict[str, Any]) -> None:
    mounts = {
        v.split(":", 1)[1] for v in (interpolate(v, {}) for v in compose["x-airflow-common"]["volumes"])
    }
    for target in ("dags", "logs", "config", "plugins", "include", "data"):
        assert f"/opt/airflow/{target}" in mounts, target
    for name in AIRFLOW_SERVICES:
        assert compose["services"][name]["volumes"] == compose["x-airflow-common"]["volumes"], (
            f"{name} has volumes of its own, which would replace the common ones"
        )


def test_sandbox_service_serves_the_emulator_from_the_same_image(compose: dict[str, Any]) -> None:
    sandbox = compose["services"]["sandbox"]
    assert sandbox["build"] == "." and sandbox["image"] == compose["x-airflow-common"]["image"]
    assert sandbox["command"].split() == ["python", "-m", "sandbox", "--host", "0.0.0.0", "--port", "8765"]


def test_sandbox_runs_only_with_its_profile_and_publishes_on_loopback(compose: dict[str, Any]) -> None:
    sandbox = compose["services"]["sandbox"]
    assert sandbox["profiles"] == ["sandbox"]
    assert sandbox["ports"] == ["127.0.0.1:8765:8765"]
    for name, service in compose["services"].items():
        depends = service.get("depends_on", {})
        assert "sandbox" not in depends, f"{name} depends on the sandbox, which runs only with its profile"


def test_env_file_uses_the_short_syntax_any_compose_v2_reads(compose: dict[str, Any]) -> None:
    # `env_file: [{path: .env, required: false}]` needs Compose 2.24+; the plain list works in every 2.x.
    assert compose["x-airflow-common"]["env_file"] == [".env"]
    for name, service in compose["services"].items():
        for entry in service.get("env_file", []):
            assert isinstance(entry, str), f"{name}: env_file long syntax needs Compose 2.24+"


def test_the_file_is_valid_against_the_compose_specification_schema(compose: dict[str, Any]) -> None:
    """jsonschema against the Compose Specification's own schema (tests/data/compose-spec/, vendored)."""
    import jsonschema

    schema = json.loads((REPO / "tests" / "data" / "compose-spec" / "compose-spec.json").read_text())
    validator = jsonschema.Draft7Validator(schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)
    errors = sorted(validator.iter_errors(compose), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)
    # ... and the schema is strict enough to notice a mistake (a typo'd key).
    broken = json.loads(json.dumps(compose))
    broken["services"]["sandbox"]["portz"] = ["8765:8765"]
    assert list(validator.iter_errors(broken))


def _connections(compose: dict[str, Any], env: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The connections airflow-init imports, with ``env`` as the .env file."""
    init_env = compose["services"]["airflow-init"]["environment"]
    conns = json.loads(interpolate(init_env["CTM_DEFAULT_CONNECTIONS"], env))
    assert set(conns) == {"calltouch_default", "metrika_default"}
    return conns["calltouch_default"], conns["metrika_default"]


def test_airflow_init_creates_the_connections_in_the_db_leaving_existing_ones(text: str) -> None:
    assert "airflow connections import /tmp/default-connections.json" in text
    assert "--overwrite" not in text  # a connection the user made or edited is kept


def test_connections_point_at_the_sandbox_by_default(compose: dict[str, Any]) -> None:
    calltouch, metrika = _connections(compose, {"CALLTOUCH_TOKEN": "", "METRIKA_TOKEN": ""})
    assert calltouch == {
        "conn_type": "calltouch",
        "host": "http://sandbox:8765",
        "port": 0,
        "password": "sandbox-ct-token",
        "extra": {"site_id": "10001"},
    }
    assert metrika == {
        "conn_type": "yandexmetrika",
        "host": "http://sandbox:8765",
        "port": 0,
        "password": "sandbox-ym-token",
    }
    # ... and that address is the sandbox service's.
    host = urlsplit(calltouch["host"])
    assert host.hostname in compose["services"]
    assert f"--port {host.port}" in compose["services"][host.hostname]["command"]


def test_connections_take_real_accounts_from_env(compose: dict[str, Any]) -> None:
    env = {
        "CALLTOUCH_HOST": "https://api.calltouch.ru",
        "CALLTOUCH_TOKEN": "ct-token",
        "CALLTOUCH_SITE_ID": "12345",
        "METRIKA_HOST": "https://api-metrika.yandex.net",
        "METRIKA_TOKEN": "ym-token",
    }
    calltouch, metrika = _connections(compose, env)
    assert (calltouch["host"], calltouch["password"], calltouch["extra"]) == (
        "https://api.calltouch.ru",
        "ct-token",
        {"site_id": "12345"},
    )
    assert (metrika["host"], metrika["password"]) == ("https://api-metrika.yandex.net", "ym-token")


def test_readme_documents_where_the_connections_point() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "docker compose up" in readme
    assert "http://sandbox:8765" in readme
    for var in ("CALLTOUCH_HOST", "CALLTOUCH_TOKEN", "CALLTOUCH_SITE_ID", "METRIKA_HOST", "METRIKA_TOKEN"):
        assert var in readme, f"README does not mention {var}"


def test_env_example_lists_every_variable_the_file_needs(text: str) -> None:
    text = text.replace("$$", "")  # escaped: the container's shell expands those, not compose
    example = {}
    for line in (REPO / ".env.example").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            example[key.strip()] = value.strip()
    required = {m.group(1) for m in _VAR.finditer(text) if m.group(2) == ":?"}
    assert required <= set(example), f"missing from .env.example: {sorted(required - set(example))}"
    for key in (
        "FERNET_KEY",
        "AIRFLOW__API_AUTH__JWT_SECRET",
        "AIRFLOW_UID",
        "CALLTOUCH_TOKEN",
        "METRIKA_TOKEN",
    ):
        assert key in example, key
    for key in ("FERNET_KEY", "AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__API__SECRET_KEY"):
        assert example[key] == "", f"{key} must be left empty in .env.example (each install makes its own)"
    assert example["CALLTOUCH_TOKEN"] == example["METRIKA_TOKEN"] == ""
    used = {m.group(1) for m in _VAR.finditer(text)} - {
        "AIRFLOW_IMAGE_NAME",
        "AIRFLOW_PROJ_DIR",
        "AIRFLOW_UID",
    }
    assert used <= set(example), f"variables used but not in .env.example: {sorted(used - set(example))}"


def test_dockerfile_installs_our_requirements_with_the_image_constraints() -> None:
    dockerfile = (REPO / "Dockerfile").read_text(encoding="utf-8")
    pinned = re.search(r"^apache-airflow==(\S+)", (REPO / "requirements.txt").read_text(), re.MULTILINE)
    assert pinned is not None
    base = re.search(r"^ARG AIRFLOW_IMAGE=apache/airflow:(\S+)", dockerfile, re.MULTILINE)
    assert base is not None and base.group(1).split("-")[0] == pinned.group(1)
    assert re.search(r"^FROM \$\{AIRFLOW_IMAGE\}", dockerfile, re.MULTILINE)
    assert '--constraint "${HOME}/constraints.txt"' in dockerfile
    assert "requirements.txt" in dockerfile
    # Our distribution, so the calltouch / yandexmetrika connection types register.
    assert re.search(r"pip install[^\n]*--no-deps -e /opt/airflow", dockerfile)
    for path in ("pyproject.toml", "plugins/", "sandbox/"):
        assert path in dockerfile, path
