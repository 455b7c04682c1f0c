"""Shows every error of the pipelines file as this file's import error (issue 13 §1).

The DAG files build only the valid pipelines, so one typo hides only its own pipeline; this file
defines no DAG and exists to make the broken ones visible: Airflow lists its exception under
"Import errors" in the UI (and ``airflow dags list-import-errors``), e.g.::

    ConfigError: 1 error(s) in pipelines.yaml; pipeline(s) not loaded: shop; pipeline(s) loaded: demo
    pipelines.yaml: pipeline 'shop': key 'counter_idd': unknown key (not allowed; check the spelling)

Warnings (a ``start_date`` before Metrika's linkage window) are emitted as ``ConfigWarning`` and
shown as this file's DAG warnings. Parsing reads the config only.
"""

from __future__ import annotations

from calltouch_metrika.dag_factory import raise_config_errors

raise_config_errors()
