"""The package's Airflow plugin: registers :class:`~calltouch_metrika.timetables.LocalDayTimetable`.

Airflow serializes a custom timetable by class path and only accepts classes registered by a plugin
(``AirflowPlugin.timetables``), in every process that reads DAGs: scheduler, dag-processor,
api-server and workers all load ``plugins/`` (../shared/airflow3-notes.md §0 item 15). This file
sits at the top of ``plugins/`` (the package itself is in ``.airflowignore``) and only imports.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from calltouch_metrika.timetables import LocalDayTimetable


class CalltouchMetrikaPlugin(AirflowPlugin):
    """Registers the one-run-per-local-day timetable of the calls and requests DAGs."""

    name = "calltouch_metrika"
    timetables = [LocalDayTimetable]  # noqa: RUF012 - Airflow reads a plain class attribute
