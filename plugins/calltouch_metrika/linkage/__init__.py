"""Linkage quality at a glance: the report dataset, its query and the UI page (the CLI is ``calltouch_metrika.report``).

* :mod:`.dataset` — the Parquet files (one per upload; documented columns) and their merge per day;
* :mod:`.query` — one pipeline's report over the last N days, as JSON-able rows (CLI, web page);
* :mod:`.web` — the FastAPI app the Airflow plugin mounts in the API server (page + JSON endpoint);
* ``python -m calltouch_metrika.report --pipeline demo --days 30`` — the same report as a plain table.

Nothing here is imported at DAG parse time except by the report task itself.
"""
