"""Calltouch plan-metric catalog (seed 001, "Импорт плановых метрик").

Pure data, no Airflow import: the plan-file validator, the operator and the
sandbox all check ``metric.type`` / ``metric.name`` against these sets, so
the spelling here is exactly the seed's (``ё`` in ``Удалён из корзины`` and
``Выручка по удалённым из корзины``; hyphens in ``Уникально-целевые ...`` and
``Спам-звонки``).

``Пользовательские`` (custom columns) and ``Цели`` (goals) take any name,
but the seed warns that such a name must not collide with a Calltouch metric
name; :data:`CALLTOUCH_METRIC_NAMES` is the set to check collisions against.
"""

from __future__ import annotations

__all__ = [
    "CALLTOUCH_METRIC_NAMES",
    "ENUMERATED_TYPES",
    "FREE_NAME_TYPES",
    "METRIC_TYPES",
    "is_valid_metric",
]

LEADS: frozenset[str] = frozenset(
    {
        "Все лиды",
        "Уникальные лиды",
        "Неудачные лиды",
        "Целевые лиды",
        "Уникально-целевые лиды",
        "Все звонки",
        "Уникальные звонки",
        "Повторные звонки",
        "Целевые звонки",
        "Уникально-целевые звонки",
        "Неудачные звонки",
        "Спам-звонки",
        "Все обратные звонки",
        "Уникальные обратные звонки",
        "Целевые обратные звонки",
        "Уникально-целевые обратные звонки",
        "Неудачные обратные звонки",
        "Спам-обратные звонки",
        "Все заявки",
        "Уникальные заявки",
        "Повторные заявки",
        "Неудачные заявки",
        "Целевые заявки",
        "Уникально-целевые заявки",
    }
)

BEHAVIOUR: frozenset[str] = frozenset({"Сессии", "Отказы"})

DEALS_AND_ROI: frozenset[str] = frozenset({"Всего сделок", "Средний чек", "Выручка"})

ECOMMERCE: frozenset[str] = frozenset(
    {
        "Просмотры товаров",
        "Добавлен в корзину",
        "Выручка по добавленным в корзину",
        "Маржа по добавленным в корзину",
        "Удалён из корзины",
        "Выручка по удалённым из корзины",
        "Маржа по удалённым из корзины",
        "Товаров в корзине",
        "Выручка по корзине",
        "Маржа по корзине",
        "Заказ оформлен",
        "Количество заказанных товаров",
        "Выручка по заказам",
        "Маржа по заказам",
        "Оплата",
        "Количество оплаченных товаров",
        "Выручка по оплатам",
        "Маржа по оплатам",
    }
)

PLATFORMS: frozenset[str] = frozenset({"Бюджет", "Показы", "Клики", "CPC"})

#: Metric types whose names are free text (custom column / goal names).
FREE_NAME_TYPES: frozenset[str] = frozenset({"Пользовательские", "Цели"})

#: Every ``metric.type`` the API accepts -> the ``metric.name`` values it
#: accepts. Free-name types map to an empty frozenset (any name, subject to
#: the collision rule).
METRIC_TYPES: dict[str, frozenset[str]] = {
    "Лиды": LEADS,
    "Поведение": BEHAVIOUR,
    "Сделки и ROI": DEALS_AND_ROI,
    "Электронная торговля": ECOMMERCE,
    "Площадки": PLATFORMS,
    "Пользовательские": frozenset(),
    "Цели": frozenset(),
}

#: Types with an enumerated list of names.
ENUMERATED_TYPES: frozenset[str] = frozenset(METRIC_TYPES) - FREE_NAME_TYPES

#: Union of all enumerated Calltouch metric names; custom columns and goals
#: may not reuse any of them.
CALLTOUCH_METRIC_NAMES: frozenset[str] = frozenset().union(*(METRIC_TYPES[t] for t in ENUMERATED_TYPES))


def is_valid_metric(metric_type: str, metric_name: str) -> bool:
    """Tell whether ``(metric_type, metric_name)`` is accepted by seed 001's rules.

    Exact match, no normalisation: the API compares strings as sent.
    """
    if metric_type in FREE_NAME_TYPES:
        return bool(metric_name.strip()) and metric_name not in CALLTOUCH_METRIC_NAMES
    allowed = METRIC_TYPES.get(metric_type)
    return allowed is not None and metric_name in allowed
