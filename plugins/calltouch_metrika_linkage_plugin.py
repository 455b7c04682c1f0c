"""Airflow plugin: the *Linkage report* page in the Airflow UI (Browse → Linkage report).

Airflow 3 serves plugin web apps from the API server (``fastapi_apps``, mounted at ``url_prefix``)
and links them from the navigation (``external_views``; with ``url_route`` the page opens inside the
UI). The app itself lives in the package (``calltouch_metrika.linkage.web``); this file only registers it.
It sits at the top of ``plugins/`` because Airflow's loader skips the package folder (.airflowignore).
"""

from __future__ import annotations

from typing import Any, ClassVar

from airflow.plugins_manager import AirflowPlugin

from calltouch_metrika.linkage.web import URL_PREFIX, create_app


class LinkageReportPlugin(AirflowPlugin):
    """Mounts the linkage report app and adds it to the Browse menu."""

    name = "calltouch_metrika_linkage_report"
    fastapi_apps: ClassVar[list[dict[str, Any]]] = [
        {"name": "calltouch_metrika_linkage_report", "app": create_app(), "url_prefix": URL_PREFIX}
    ]
    external_views: ClassVar[list[dict[str, Any]]] = [
        {
            "name": "Linkage report",
            "href": f"{URL_PREFIX.lstrip('/')}/linkage",
            "destination": "nav",
            "category": "browse",
            "url_route": "linkage-report",
        }
    ]
