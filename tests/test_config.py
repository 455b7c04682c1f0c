"""The pipelines file: defaults, merging, and errors that name the file, the pipeline and the key."""

from __future__ import annotations

import tempfile
import textwrap
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from calltouch_metrika.config import (
    CALLS_COLUMNS,
    REPO_ROOT,
    ConfigWarning,
    config_path,
    cron_time_of_day,
    load_config,
    load_valid_config,
    read_config,
)
from calltouch_metrika.dag_factory import raise_config_errors
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
    assert msg.startswith("pipelines.yaml: pipeline 'demo': key 'name': duplicate pipeline name")
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


# -- issue 13 §1: every bad value caught when the file is parsed, naming file, pipeline and key ----

GOOD = "  - {name: good, site_id: 7, counter_id: 8, start_date: 2026-11-20}\n"


@pytest.mark.parametrize(
    ("extra", "key", "words"),
    [
        ("    start_date: 2026-13-01\n", "start_date", "month"),
        ("    filters: {with_call_tags: maybe}\n", "filters", "with_call_tags: must be true or false"),
        ("    filters: {attribution: 5}\n", "filters", "attribution: must be 0"),
        ("    filters: {bind_to: visit}\n", "filters", "bind_to: must be one of call, session"),
        ("    price: {mode: fixed, value: 1e20}\n", "price", "more than 1,000,000,000 per call"),
        ("    price: {mode: fixed, value: .nan}\n", "price", "positive 'value'"),
        ("    identifier: {field: yaClientID}\n", "identifier", "'yaClientID' is not a calls column"),
        (f"    new_goal_name: {'Г' * 300}\n", "new_goal_name", "at most 255 characters"),
        ("    new_goal_name: ''\n", "new_goal_name", "at least 1 character"),
        ("    site_id: true\n", "site_id", "valid integer"),
        ("    counter_id: '20001'\n", "counter_id", "valid integer"),
        ("    plans_file: no_such_plans.csv\n", "plans_file", "does not exist"),
        ('    schedule: "0 5 * * 1-5"\n', "schedule", "daily cron 'M H * * *'"),
        ('    schedule: "*/10 * * * *"\n', "schedule", "daily cron 'M H * * *'"),
        (
            '    requests_export: {enabled: true, schedule: "0 5,17 * * *"}\n',
            "requests_export.schedule",
            "daily cron",
        ),
        (
            "    requests_export: {enabled: true, params: {with_attrs: 1}}\n",
            "requests_export.params",
            "with_attrs",
        ),
    ],
)
def test_issue_13_examples_are_parse_time_errors(tmp_path: Path, extra: str, key: str, words: str) -> None:
    msg = error_of(tmp_path, MINIMAL + extra)
    assert msg.startswith(f"pipelines.yaml: pipeline 'demo': key '{key}': "), msg
    assert words in msg, msg


@pytest.mark.parametrize(
    ("extra", "key", "words"),
    [
        # findings 7: values that passed and were wrong at run time
        ("    price: {mode: fixed, value: true}\n", "price.value", "must be a number"),
        ("    price: {mode: fixed, value: '1500'}\n", "price.value", "must be a number"),
        ("    price: {mode: fixed, value: 1.0e-9}\n", "price", "uploaded as 0.00"),
        ("    price: {mode: fixed, value: 1e-9}\n", "price", "uploaded as 0.00"),
        ("    price: {mode: fixed, value: 10.005}\n", "price", "more than two decimals"),
        (
            "    price: {mode: orders, currency: XYZ}\n",
            "price.currency",
            "not an ISO 4217 code Metrika accepts",
        ),
        ("    price: {mode: orders, currency: rub}\n", "price.currency", "ISO 4217"),
        ("    new_goal_name: '   '\n", "new_goal_name", "blank"),
        ('    new_goal_name: "a\\nb"\n', "new_goal_name", "U+000A"),
        ('    new_goal_name: "a\\0b"\n', "new_goal_name", "U+0000"),
        ('    new_goal_name: "a\\u202eb"\n', "new_goal_name", "U+202E"),
        ("    identifier: {type: ClientId, field: callId}\n", "identifier", "cannot hold a ClientId"),
        ("    identifier: {type: ClientId, field: timestamp}\n", "identifier", "cannot hold a ClientId"),
        ("    identifier: {type: UserId, field: duration}\n", "identifier", "cannot hold a UserId"),
        ("    identifier: {type: Yclid, field: city}\n", "identifier", "cannot hold a Yclid"),
        ("    identifier: {type: Yclid, field: 'city?yclid'}\n", "identifier", "from a URL column"),
        ("    storage_root: 'nosuchproto://x'\n", "storage_root", "unknown protocol 'nosuchproto'"),
        ("    plans_file: /etc/passwd\n", "plans_file", "plain file name inside the plans directory"),
        ("    plans_file: ../../README.md\n", "plans_file", "plain file name"),
        ("    plans_file: '.'\n", "plans_file", "plain file name"),
        ("    plans_file: s3://bucket/plans.csv\n", "plans_file", "plain file name"),
        # findings 1: values Airflow refuses when it builds the DAG
        ("    start_date: 0001-01-01\n", "start_date", "outside 2000-01-01..2099-12-31"),
        ("    start_date: 9999-12-31\n", "start_date", "outside"),
        ("    start_date: 20261118\n", "start_date", "number of days back"),
        ("    start_date: 2026/11/18\n", "start_date", "not a date YYYY-MM-DD"),
        (f"    dag_tags: ['{'x' * 101}']\n", "dag_tags", "Airflow allows 100"),
        ("    dag_tags: ['']\n", "dag_tags", "blank"),
        ("    dag_tags: [1, 2]\n", "dag_tags.0", "valid string"),
        ("    calltouch_conn_id: 'bad id'\n", "calltouch_conn_id", "should match pattern"),
        ("    metrika_conn_id: ''\n", "metrika_conn_id", "should match pattern"),
        ("    pool: ''\n", "pool", "should match pattern"),
        ("    owner: '  '\n", "owner", "blank"),
        # strict types: no bool for a number, no text for a flag, no float for a count
        ("    retries: 2.0\n", "retries", "valid integer"),
        ("    max_active_runs: '3'\n", "max_active_runs", "valid integer"),
        ("    hash_phone_numbers: 'no'\n", "hash_phone_numbers", "valid boolean"),
        ("    requests_export: {enabled: 'yes'}\n", "requests_export.enabled", "valid boolean"),
        ("    status_poll_seconds: 0.0001\n", "status_poll_seconds", "greater than or equal to 0.1"),
    ],
)
def test_values_wrong_at_run_time_are_parse_time_errors(
    tmp_path: Path, extra: str, key: str, words: str
) -> None:
    own_start = extra.lstrip().startswith("start_date")
    msg = error_of(
        tmp_path, (MINIMAL.replace("    start_date: 2026-11-01\n", "") if own_start else MINIMAL) + extra
    )
    assert msg.startswith(f"pipelines.yaml: pipeline 'demo': key '{key}"), msg
    assert words in msg, msg


@pytest.mark.parametrize(
    "extra",
    [
        "    price: {mode: fixed, value: 1500}\n",
        "    price: {mode: fixed, value: 0.01, currency: USD}\n",
        "    price: {mode: fixed, value: 1e3}\n",  # YAML 1.2 float PyYAML reads as text
        "    identifier: {type: Yclid, field: 'url?yclid'}\n",
        "    identifier: {type: ClientId, field: 'callUrl?_ym_uid'}\n",
        "    identifier: {type: UserId, field: ctClientId}\n",
        "    storage_root: 'memory://bucket/data'\n",
        "    new_goal_name: Звонок с сайта\n",
    ],
)
def test_good_values_still_pass(tmp_path: Path, extra: str) -> None:
    assert [p.name for p in load_config(write(tmp_path, MINIMAL + extra)).pipelines] == ["demo"]


def test_a_future_start_date_warns(tmp_path: Path) -> None:
    report = read_config(
        write(tmp_path, MINIMAL.replace("2026-11-01", "2099-01-01")), today=date(2026, 11, 30)
    )
    assert report.errors == [] and [p.name for p in report.pipelines] == ["demo"]
    assert report.warnings == [
        "pipelines.yaml: pipeline 'demo': key 'start_date': start_date 2099-01-01 is in the future "
        "(26330 day(s) from today): the DAG runs nothing until the day after it"
    ]


def test_a_pipeline_whose_dag_cannot_be_built_is_a_config_error_naming_it(tmp_path: Path) -> None:
    """The safety net behind validation (findings 1): Airflow's own refusal names the pipeline and key."""
    from calltouch_metrika.config import Pipeline
    from calltouch_metrika.dag_factory import build_each, config_report, pipeline_dag_errors

    good = load_config(write(tmp_path, MINIMAL)).pipelines[0]
    # a value validation would refuse, forced in: what Airflow says when the DAG is built
    bad = good.model_copy(update={"name": "bad", "dag_tags": ["x" * 101]})
    errors = pipeline_dag_errors(bad)
    assert errors and errors[0].startswith("pipelines.yaml: pipeline 'bad': key 'dag_tags': ValueError: ")
    old = good.model_copy(update={"name": "old", "start_date": date(1, 1, 1)})
    assert pipeline_dag_errors(old)[0].startswith("pipelines.yaml: pipeline 'old': key 'start_date': ")
    assert pipeline_dag_errors(good) == []
    report = read_config(write(tmp_path, MINIMAL))
    report.pipelines = [bad, good]
    report = config_report(report)
    assert [p.name for p in report.pipelines] == ["demo"] and report.broken == ["bad"]
    assert isinstance(good, Pipeline)

    # and a DAG file building each pipeline isolates one whose construction raises anyway
    def build(p: Any) -> Any:
        from airflow.sdk import DAG

        with DAG(dag_id=p.dag_id, schedule=None, tags=list(p.dag_tags)) as dag:
            if p.name == "bad":
                raise RuntimeError("boom while wiring tasks")
        return dag

    with pytest.warns(ConfigWarning, match="pipeline 'bad': its DAG could not be built .*boom"):
        dags = build_each([good.model_copy(update={"name": "bad"}), good], build)
    assert list(dags) == [good.dag_id]
    from airflow.sdk.definitions._internal.contextmanager import DagContext

    assert not any(d.dag_id.endswith("__bad") for d, _ in DagContext.autoregistered_dags)


def test_a_broken_pipeline_hides_only_itself(tmp_path: Path) -> None:
    report = read_config(write(tmp_path, MINIMAL + "    counter_idd: 5\n" + GOOD))
    assert [p.name for p in report.pipelines] == ["good"]
    assert report.broken == ["demo"]
    assert report.errors == [
        "pipelines.yaml: pipeline 'demo': key 'counter_idd': unknown key (not allowed; check the spelling)"
    ]
    assert [
        p.name for p in load_valid_config(write(tmp_path, MINIMAL + "    site_id: -1\n" + GOOD)).pipelines
    ] == ["good"]
    with pytest.raises(ConfigError) as exc:
        raise_config_errors(write(tmp_path, MINIMAL + "    site_id: true\n" + GOOD))
    assert str(exc.value).splitlines()[0] == (
        "1 error(s) in pipelines.yaml; pipeline(s) not loaded: demo; pipeline(s) loaded: good"
    )


@pytest.mark.parametrize("text", ["", "# nothing yet\n", "pipelines: []\n", "defaults: {timezone: UTC}\n"])
def test_an_empty_file_says_so(tmp_path: Path, text: str) -> None:
    msg = error_of(tmp_path, text)
    assert msg == (
        "pipelines.yaml: key 'pipelines': no pipelines configured (the file defines 0), so no calls DAG exists"
    )


def test_start_date_before_the_linkage_window_warns_with_the_number_of_days(tmp_path: Path) -> None:
    text = MINIMAL.replace("2026-11-01", "2020-01-01")
    report = read_config(write(tmp_path, text), today=date(2026, 11, 30))
    assert report.errors == [] and [p.name for p in report.pipelines] == ["demo"]
    # 2020-01-01 .. 2026-11-30 is 2525 days; the window is the last 21 of them.
    assert report.warnings == [
        "pipelines.yaml: pipeline 'demo': key 'start_date': start_date 2020-01-01 is 2504 day(s) before "
        "Metrika's 21-day linkage window (it starts 2026-11-09): calls of those days are extracted and "
        "uploaded but cannot be linked to visits; set a recent start_date"
    ]
    recent = read_config(
        write(tmp_path, MINIMAL.replace("2026-11-01", "2026-11-09")), today=date(2026, 11, 30)
    )
    assert recent.warnings == []
    with pytest.warns(ConfigWarning, match="2020-01-01 is [0-9]+ day"):
        raise_config_errors(write(tmp_path, text))


def test_calls_columns_match_the_calls_table() -> None:
    from calltouch_metrika.transforms.records import INT_FIELDS, STRING_FIELDS

    assert set(CALLS_COLUMNS) == set(INT_FIELDS) | set(STRING_FIELDS)
    assert load_config(write(Path(tempfile.mkdtemp()), MINIMAL + "    identifier: {field: 'url?yclid'}\n"))


def test_schedule_keeps_its_meaning() -> None:
    assert cron_time_of_day("0 5 * * *") == "05:00"
    assert cron_time_of_day("30 2 * * *") == "02:30"
    assert cron_time_of_day("@daily") == "00:00"
    for bad in (
        "0 5 * * 1",
        "0 5,6 * * *",
        "0 */2 * * *",
        "0 5 1 * *",
        "@hourly",
        "61 5 * * *",
        "0 24 * * *",
    ):
        with pytest.raises(ValueError, match="not a daily cron"):
            cron_time_of_day(bad)


# -- property: any broken pipeline hides only itself, through a real DagBag on dags/ -------------

_BAD_VALUES: list[tuple[str, Any]] = [
    ("site_id", True),
    ("site_id", -3),
    ("site_id", "abc"),
    ("counter_id", False),
    ("counter_id", 0),
    ("timezone", "Mars/Olympus"),
    ("schedule", "0 5 * * 1"),
    ("schedule", "nonsense"),
    ("start_date", "2026-13-01"),
    ("start_date", "2026-02-30"),
    ("start_date", "yesterday"),
    ("price", {"mode": "fixed", "value": 1e20}),
    ("price", {"mode": "fixed"}),
    ("price", {"mode": "gratis"}),
    ("filters", {"with_call_tags": "maybe"}),
    ("filters", {"attribution": 5}),
    ("filters", {"target_onl": True}),
    ("identifier", {"field": "yaClientID"}),
    ("identifier", {"type": "Email"}),
    ("new_goal_name", "x" * 300),
    ("plans_file", "missing_plans.csv"),
    ("max_active_runs", 0),
    ("retries", -1),
    ("on_linkage_failure", "ignore"),
    ("storage_root", "   "),
    ("requests_export", {"enabled": True, "params": {"bogus": 1}}),
    ("start_date", "0001-01-01"),
    ("dag_tags", ["t" * 101]),
    ("price", {"mode": "fixed", "value": True}),
    ("price", {"mode": "fixed", "value": 1e-9}),
    ("price", {"mode": "orders", "currency": "XYZ"}),
    ("new_goal_name", "a\x00b"),
    ("new_goal_name", "   "),
    ("identifier", {"type": "ClientId", "field": "callId"}),
    ("storage_root", "nosuchproto://x"),
    ("plans_file", "../../README.md"),
    ("site_id", True),
    ("retries", 2.0),
]


def _pipeline(name: str, site: int) -> dict[str, Any]:
    return {"name": name, "site_id": site, "counter_id": site + 1000, "start_date": "2026-11-20"}


@st.composite
def _broken_configs(draw: st.DrawFn) -> tuple[dict[str, Any], list[str], dict[str, str]]:
    n = draw(st.integers(min_value=2, max_value=5))
    names = [f"p{i}" for i in range(n)]
    broken_idx = draw(st.sets(st.integers(min_value=0, max_value=n - 1), min_size=1, max_size=n - 1))
    items, broken = [], {}
    for i, name in enumerate(names):
        item = _pipeline(name, 100 + i)
        if i in broken_idx:
            if draw(st.booleans()):
                key, value = draw(st.sampled_from(_BAD_VALUES))
                item[key] = value
            else:  # a typo of a key
                key = draw(st.sampled_from(["counter_idd", "site", "timezon", "shedule", "price_mode"]))
                item[key] = 1
            broken[name] = key
        items.append(item)
    healthy = [n for n in names if n not in broken]
    return {"pipelines": items}, healthy, broken


@settings(max_examples=60, deadline=None)
@given(case=_broken_configs())
def test_property_every_error_names_its_pipeline_and_key(case: Any) -> None:
    raw, healthy, broken = case
    path = Path(tempfile.mkdtemp()) / "pipelines.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    report = read_config(path)
    assert [p.name for p in report.pipelines] == healthy
    assert report.broken == list(broken)
    for name, key in broken.items():
        assert any(
            line.startswith(f"pipelines.yaml: pipeline '{name}': key '{key}")
            for err in report.errors
            for line in err.splitlines()
        ), (name, key, report.errors)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=_broken_configs())
def test_property_healthy_pipelines_still_load_in_a_dagbag(
    case: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.dag_processing.dagbag import DagBag

    raw, healthy, broken = case
    path = Path(tempfile.mkdtemp()) / "pipelines.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    monkeypatch.setenv("CALLTOUCH_METRIKA_CONFIG", str(path))
    bag = DagBag(dag_folder=str(REPO_ROOT / "dags"))
    calls = sorted(d for d in bag.dags if d.startswith("calltouch_calls_to_metrika__"))
    assert calls == sorted(f"calltouch_calls_to_metrika__{n}" for n in healthy)
    assert "calltouch_plans_import" in bag.dags
    errors = {Path(f).name: e for f, e in bag.import_errors.items()}
    assert list(errors) == ["calltouch_config_errors.py"], errors
    message = errors["calltouch_config_errors.py"]
    for name, key in broken.items():
        assert f"pipelines.yaml: pipeline '{name}': key '{key}" in message, (name, key, message)
