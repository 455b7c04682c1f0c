"""Provider metadata that registers our connection types with Airflow.

Loaded through the ``apache_airflow_provider`` entry point in ``pyproject.toml`` while Airflow
reads its configuration, so this module must not import Airflow (or anything heavy).

The UI form of each connection type is declared here (``ui-field-behaviour`` and ``conn-fields``,
../shared/airflow3-notes.md §3), not on the hooks: Airflow 3.2+ reads it without importing the hook.
"""

from __future__ import annotations

from typing import Any


def _connection_type(
    conn_type: str,
    hook_class: str,
    hook_name: str,
    *,
    host: str,
    token_label: str,
    token_placeholder: str,
    field: str,
    field_label: str,
    field_description: str,
    field_placeholder: str,
) -> dict[str, Any]:
    """One connection type: host + token (password) + one numeric extra field; the rest of the form hidden.

    Both APIs take the same form (API URL, a token, one id), so the form is written once.
    """
    return {
        "connection-type": conn_type,
        "hook-class-name": hook_class,
        "hook-name": hook_name,
        "ui-field-behaviour": {
            "hidden-fields": ["schema", "login", "port"],
            "relabeling": {"host": "API URL", "password": token_label},
            "placeholders": {"host": host, "password": token_placeholder, field: field_placeholder},
        },
        "conn-fields": {
            field: {
                "label": field_label,
                "description": field_description,
                "schema": {"type": ["string", "null"], "pattern": "^[0-9]*$"},
            },
        },
    }


_CALLTOUCH = _connection_type(
    "calltouch",
    "calltouch_metrika.hooks.calltouch.CalltouchHook",
    "Calltouch",
    host="https://api.calltouch.ru",
    token_label="API token",
    token_placeholder="token from Интеграции → API (45 characters)",
    field="site_id",
    field_label="Site id",
    field_description="Calltouch site (личный кабинет) id, shown next to the API token in Calltouch.",
    field_placeholder="12345",
)

# No "_" in the type name: Airflow warns "Connection schemes (type: ...) shall not contain '_' according to
# RFC3986" at every fetch of such a connection (Connection.get_uri), in every component's log.
_METRIKA = _connection_type(
    "yandexmetrika",
    "calltouch_metrika.hooks.metrika.MetrikaHook",
    "Yandex Metrika",
    host="https://api-metrika.yandex.net",
    token_label="OAuth token",
    token_placeholder="OAuth token with metrika:write access",
    field="counter_id",
    field_label="Counter id (optional)",
    field_description="Only used by the Test button to check access to one counter.",
    field_placeholder="optional, e.g. 20001",
)


#: The type name before 0.2.0, still registered so existing connections keep their form and Test button;
#: change their type to ``yandexmetrika`` (CHANGELOG.md) to silence Airflow's RFC3986 warning.
_METRIKA_OLD_NAME = {
    **_METRIKA,
    "connection-type": "yandex_metrika",
    "hook-class-name": "calltouch_metrika.hooks.metrika_legacy.LegacyMetrikaHook",
    "hook-name": "Yandex Metrika (old type name: use yandexmetrika)",
}


def get_provider_info() -> dict[str, Any]:
    """Return the provider info dict Airflow validates against ``provider_info.schema.json``."""
    return {
        "package-name": "calltouch-metrika",
        "name": "Calltouch and Yandex Metrika",
        "description": "Calltouch calls to Yandex Metrika offline calls, plans import, requests export.",
        "connection-types": [_CALLTOUCH, _METRIKA, _METRIKA_OLD_NAME],
    }
