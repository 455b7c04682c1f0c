"""Provider metadata that registers our connection types with Airflow.

Loaded through the ``apache_airflow_provider`` entry point in ``pyproject.toml`` while Airflow
reads its configuration, so this module must not import Airflow (or anything heavy).

The UI form of each connection type is declared here (``ui-field-behaviour`` and ``conn-fields``,
../shared/airflow3-notes.md §3), not on the hooks: Airflow 3.2+ reads it without importing the hook.
"""

from __future__ import annotations

from typing import Any

_CALLTOUCH = {
    "connection-type": "calltouch",
    "hook-class-name": "calltouch_metrika.hooks.calltouch.CalltouchHook",
    "hook-name": "Calltouch",
    "ui-field-behaviour": {
        "hidden-fields": ["schema", "login", "port"],
        "relabeling": {"host": "API URL", "password": "API token"},
        "placeholders": {
            "host": "https://api.calltouch.ru",
            "password": "token from Интеграции → API (45 characters)",
            "site_id": "12345",
        },
    },
    "conn-fields": {
        "site_id": {
            "label": "Site id",
            "description": "Calltouch site (личный кабинет) id, shown next to the API token in Calltouch.",
            "schema": {"type": ["string", "null"], "pattern": "^[0-9]*$"},
        },
    },
}

_METRIKA = {
    "connection-type": "yandex_metrika",
    "hook-class-name": "calltouch_metrika.hooks.metrika.MetrikaHook",
    "hook-name": "Yandex Metrika",
    "ui-field-behaviour": {
        "hidden-fields": ["schema", "login", "port"],
        "relabeling": {"host": "API URL", "password": "OAuth token"},
        "placeholders": {
            "host": "https://api-metrika.yandex.net",
            "password": "OAuth token with metrika:write access",
            "counter_id": "optional, e.g. 20001",
        },
    },
    "conn-fields": {
        "counter_id": {
            "label": "Counter id (optional)",
            "description": "Only used by the Test button to check access to one counter.",
            "schema": {"type": ["string", "null"], "pattern": "^[0-9]*$"},
        },
    },
}


def get_provider_info() -> dict[str, Any]:
    """Return the provider info dict Airflow validates against ``provider_info.schema.json``."""
    return {
        "package-name": "calltouch-metrika",
        "name": "Calltouch and Yandex Metrika",
        "description": "Calltouch calls to Yandex Metrika offline calls, plans import, requests export.",
        "connection-types": [_CALLTOUCH, _METRIKA],
    }
