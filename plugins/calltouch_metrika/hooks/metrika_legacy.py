"""The Metrika connection type's name before 0.2.0, ``yandex_metrika``, kept so existing connections work.

Airflow warns at every fetch of a connection whose type contains ``_`` (RFC3986, ``Connection.get_uri``),
so the type is now ``yandexmetrika``; connections of the old type keep working through this hook (same
behaviour) until their type is changed (CHANGELOG.md, 0.2.0).
"""

from __future__ import annotations

from calltouch_metrika.hooks.metrika import MetrikaHook


class LegacyMetrikaHook(MetrikaHook):
    """:class:`~calltouch_metrika.hooks.metrika.MetrikaHook` for connections of the old type ``yandex_metrika``."""

    conn_type = "yandex_metrika"
    hook_name = "Yandex Metrika (old type name: use yandexmetrika)"
