"""The pipelines file: defaults, merging, and errors that name the file, the pipeline and the key."""

from __future__ import annotations

import textwrap
from datetime import date
from pathlib import Path

import pytest

from calltouch_metrika.config import REPO_ROOT, config_path, load_config
from calltouch_metrika.exceptions import ConfigError

MINIMAL = """
pipelines:
  - name: demo
    site_id: 10001
    counter_id: 20001
    start_date: 2026-11-01
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "pipelines.yaml"
    p.write_text(textwrap.dedent(text), encoding="utf-8")
    return p


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, text))
    return str(exc.value)


def test_defaults_of_a_minimal_pipeline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLTOUCH_METRIKA_DATA", "/srv/ctm-data")
    p = load_config(write(tmp_path, MINIMAL)).get_pipeline("demo")
    assert p.calltouch_conn_id == "calltouch_default"
    assert p.metrika_conn_id == "metrika_default"
    assert p.timezone == "Europe/Moscow"
    assert p.schedule == "0 5 * * *"
    assert p.start_date == date(2026, 11, 1)
    assert (p.identifier.type, p.identifier.field) == ("ClientId", "yaClientId")
    assert p.price.mode == "none" and p.price.currency == "RUB"
    assert p.tags.enabled is True
    assert p.on_linkage_failure == "fail"
    assert p.storage_root == "/srv/ctm-data"
    assert p.hash_phone_numbers is False
    assert (p.max_active_runs, p.retries) == (3, 2)
    assert p.dag_id == "calltouch_calls_to_metrika__demo"
    assert p.requests_export is None and p.plans_file is None


def test_defaults_section_is_deep_merged_and_pipeline_wins(tmp_path: Path) -> None:
    cfg = load_config(
        write(
            tmp_path,
            """
            defaults:
              timezone: Asia/Yekaterinburg
              price: {mode: fixed, value: 100}
              retries: 5
            pipelines:
              - {name: a, site_id: 1, counter_id: 2, start_date: 2026-11-01}
              - {name: b, site_id: 3, counter_id: 4, start_date: 2026-11-01, price: {value: 250.5}, retries: 0}
            """,
        )
    )
    a, b = cfg.pipelines
    assert a.timezone == b.timezone == "Asia/Yekaterinburg"
    assert (a.price.mode, a.price.value, a.retries) == ("fixed", 100, 5)
    assert (b.price.mode, b.price.value, b.retries) == ("fixed", 250.5, 0)


def test_env_expansion_in_storage_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CTM_BUCKET", "my-bucket")
    text = MINIMAL + '    storage_root: "s3://${CTM_BUCKET}/calls/${CTM_UNSET_VAR:-x}"\n'
    assert load_config(write(tmp_path, text)).pipelines[0].storage_root == "s3://my-bucket/calls/x"
    msg = error_of(tmp_path, MINIMAL + '    storage_root: "${CTM_SURELY_UNSET}/x"\n')
    assert "pipeline 'demo'" in msg and "storage_root" in msg and "CTM_SURELY_UNSET" in msg


def test_missing_key_names_file_pipeline_and_key(tmp_path: Path) -> None:
    msg = error_of(
        tmp_path,
        """
        pipelines:
          - {name: demo, site_id: 10001, start_date: 2026-11-01}
        """,
    )
    assert msg == "pipelines.yaml: pipeline 'demo': key 'counter_id': field required"


@pytest.mark.parametrize(
    ("extra", "key", "words"),
    [
        ("    conter_id: 5\n", "conter_id", "unknown key"),
        ("    timezone: Mars/Olympus\n", "timezone", "unknown time zone"),
        ('    schedule: "every day"\n', "schedule", "cron"),
        ("    price: {mode: fixed}\n", "price", "positive 'value'"),
        ("    price: {mode: none, currency: rub}\n", "price.currency", "ISO 4217"),
        ("    price: {mode: free}\n", "price.mode", "'none', 'fixed' or 'orders'"),
        ("    identifier: {type: UserId}\n", "identifier", "'field' is required"),
        ("    identifier: {type: ClientId, feild: x}\n", "identifier.feild", "unknown key"),
        ("    on_linkage_failure: ignore\n", "on_linkage_failure", "'fail' or 'warn'"),
        ("    filters: {targetOnly: true}\n", "filters", "targetOnly"),
        ("    requests_export: {enabled: true, params: {bogus: 1}}\n", "requests_export.params", "bogus"),
        ("    max_active_runs: 0\n", "max_active_runs", "greater than or equal to 1"),
        ("    tags: [a, b]\n", "tags", "valid dictionary"),
    ],
)
def test_invalid_values_name_pipeline_and_key(tmp_path: Path, extra: str, key: str, words: str) -> None:
    msg = error_of(tmp_path, MINIMAL + extra)
    assert msg.startswith(f"pipelines.yaml: pipeline 'demo': key '{key}': "), msg
    assert words in msg


def test_bad_name_and_duplicates(tmp_path: Path) -> None:
    msg = error_of(
        tmp_path, "pipelines:\n  - {name: Demo-1, site_id: 1, counter_id: 2, start_date: 2026-11-01}\n"
    )
    assert "pipeline 'Demo-1': key 'name'" in msg
    msg = error_of(
        tmp_path,
        """
        pipelines:
          - {name: demo, site_id: 1, counter_id: 2, start_date: 2026-11-01}
          - {name: demo, site_id: 3, counter_id: 4, start_date: 2026-11-01}
        """,
    )
    assert msg == "pipelines.yaml: pipeline 'demo': key 'name': duplicate pipeline name"
    msg = error_of(tmp_path, "pipelines:\n  - {site_id: 1, counter_id: 2, start_date: 2026-11-01}\n")
    assert "pipeline '#1': key 'name': field required" in msg


def test_file_level_errors(tmp_path: Path) -> None:
    assert "not valid YAML" in error_of(tmp_path, "pipelines: [\n")
    assert "unknown top-level key(s) ['pipeline']" in error_of(tmp_path, "pipeline: []\n")
    assert "'pipelines': must be a list" in error_of(tmp_path, "pipelines: {name: x}\n")
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="no pipeline named 'nope'"):
        load_config(write(tmp_path, MINIMAL)).get_pipeline("nope")


def test_config_path_env_and_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CALLTOUCH_METRIKA_CONFIG", raising=False)
    assert config_path() == REPO_ROOT / "include" / "config" / "pipelines.yaml"
    monkeypatch.setenv("CALLTOUCH_METRIKA_CONFIG", str(write(tmp_path, MINIMAL)))
    assert config_path() == tmp_path / "pipelines.yaml"
    assert [p.name for p in load_config().pipelines] == ["demo"]


def test_shipped_file_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CALLTOUCH_METRIKA_CONFIG", raising=False)
    cfg = load_config()
    demo = cfg.get_pipeline("demo")
    assert (demo.site_id, demo.counter_id) == (10001, 20001)
    target = cfg.get_pipeline("target_calls")
    assert (target.site_id, target.counter_id, target.price.mode) == (10002, 20002, "fixed")
    assert target.filters["target_only"] is True
