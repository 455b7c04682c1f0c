"""Config keys of the call ledger (issue 12): lookback_days, settle_days, pipelines sharing a counter."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from calltouch_metrika.config import load_config, read_config
from calltouch_metrika.exceptions import ConfigError


def _load(tmp_path: Path, pipelines: str):
    p = tmp_path / "pipelines.yaml"
    p.write_text("pipelines:\n" + textwrap.indent(textwrap.dedent(pipelines), "  "), encoding="utf-8")
    return load_config(p)


ONE = """
- name: demo
  site_id: 10001
  counter_id: 20001
  start_date: 2026-11-01
"""


def test_lookback_and_settle_defaults_and_bounds(tmp_path: Path) -> None:
    p = _load(tmp_path, ONE).pipelines[0]
    assert (p.lookback_days, p.settle_days) == (2, 0)
    p = _load(tmp_path, ONE + "  lookback_days: 5\n  settle_days: 1\n").pipelines[0]
    assert (p.lookback_days, p.settle_days) == (5, 1)
    with pytest.raises(ConfigError, match=r"pipeline 'demo'.*must be at most 20.*21 days"):
        _load(tmp_path, ONE + "  lookback_days: 15\n  settle_days: 6\n")
    with pytest.raises(ConfigError, match=r"key 'lookback_days'"):
        _load(tmp_path, ONE + "  lookback_days: -1\n")


def test_identical_pipelines_on_one_counter_are_refused(tmp_path: Path) -> None:
    text = ONE + ONE.replace("name: demo", "name: dup_b")
    with pytest.raises(ConfigError, match=r"'demo' and 'dup_b'.*identical filters send the same calls twice"):
        _load(tmp_path, text)
    report = read_config(tmp_path / "pipelines.yaml")  # leniently: only the later one is not loaded
    assert [p.name for p in report.pipelines] == ["demo"] and report.broken == ["dup_b"]


def test_overlapping_filters_warn_and_other_sites_do_not(tmp_path: Path) -> None:
    text = ONE + ONE.replace("name: demo", "name: targets") + "  filters: {target_only: true}\n"
    cfg = _load(tmp_path, text)
    assert [p.name for p in cfg.pipelines] == ["demo", "targets"]
    (warning,) = [w for w in read_config(tmp_path / "pipelines.yaml").warnings if "filters" in w]
    assert "'demo' and 'targets'" in warning and "may select the same calls" in warning
    other_site = ONE + ONE.replace("name: demo", "name: other").replace("10001", "10002")
    assert len(_load(tmp_path, other_site).pipelines) == 2
    assert not [w for w in read_config(tmp_path / "pipelines.yaml").warnings if "filters" in w]
