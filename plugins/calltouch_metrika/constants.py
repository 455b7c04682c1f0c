"""Constants of calltouch-metrika: pure data, no imports of hooks, operators, pandas or pyarrow.

Imported while DAG files are parsed (``config.py`` checks parameter names against these tables), so it
must stay light: the standard library only.
"""

from __future__ import annotations

# --------------------------------------------------------------------------------------------------
# Calltouch API parameter tables (api-notes §1.3, seed 004); used by hooks/calltouch.py and config.py
# --------------------------------------------------------------------------------------------------

#: snake_case keyword -> Calltouch calls-diary query parameter (api-notes §1.3).
CALLS_PARAMS: dict[str, str] = {
    "attribution": "attribution",
    "bind_to": "bindTo",
    "unique_only": "uniqueOnly",
    "target_only": "targetOnly",
    "uniq_target_only": "uniqTargetOnly",
    "callback_only": "callbackOnly",
    "with_call_tags": "withCallTags",
    "with_comments": "withComments",
    "with_map_visits": "withMapVisits",
    "with_orders": "withOrders",
    "with_yandex_direct": "withYandexDirect",
    "with_google_adwords": "withGoogleAdwords",
    "with_text": "withText",
    "with_dcm": "withDcm",
    "with_callback_info": "withCallbackInfo",
    "utm_medium": "utmMedium",
}

#: snake_case keyword -> Calltouch requests-journal query parameter (seed 004).
REQUESTS_PARAMS: dict[str, str] = {
    "time_from": "timeFrom",
    "time_to": "timeTo",
    "attribution": "attribution",
    "request_number": "requestNumber",
    "request_id": "requestId",
    "subject": "subject",
    "keywords": "keywords",
    "city": "city",
    "source": "source",
    "medium": "medium",
    "bind_to": "bindTo",
    "ani_value": "ani.value",
    "ani_filter_mode": "ani.filterMode",
    "email_value": "email.value",
    "email_filter_mode": "email.filterMode",
    "manager": "manager",
    "with_map_visits": "withMapVisits",
    "with_request_tags": "withRequestTags",
    "with_yandex_direct": "withYandexDirect",
    "with_google_adwords": "withGoogleAdwords",
    "with_attrs": "withAttrs",
    "with_widget_info": "withWidgetInfo",
    "with_custom_fields": "withCustomFields",
    "with_dcm": "withDcm",
}

#: Allowed values of the enumerated parameters.
BIND_TO_CALLS = ("call", "session")
BIND_TO_REQUESTS = ("request", "session")
FILTER_MODES = ("startwith", "contains", "exact")

# --------------------------------------------------------------------------------------------------
# Airflow (statuses, limits and names below: the structural part of issue 10)
# --------------------------------------------------------------------------------------------------

#: The Airflow pool the tasks that call Calltouch run in, so that several workers together stay under
#: Calltouch's 5 requests/s per IP (each hook's limiter only sees its own process; api-notes §1.6).
#: ``make up`` and docker compose create it with one slot.
CALLTOUCH_POOL = "calltouch_api"

# --------------------------------------------------------------------------------------------------
# Metrika: offline calls uploads (api-notes §3.4)
# --------------------------------------------------------------------------------------------------

#: ``uploading.status`` values, in the order Metrika moves through them.
UPLOAD_PREPARED = "PREPARED"
UPLOAD_UPLOADED = "UPLOADED"
UPLOAD_EXPORTED = "EXPORTED"
UPLOAD_MATCHED = "MATCHED"
UPLOAD_PROCESSED = "PROCESSED"
#: No identifier matched a visit; static calls still reach the call reports.
UPLOAD_LINKAGE_FAILURE = "LINKAGE_FAILURE"
#: Statuses after which Metrika changes nothing more: polling stops there.
UPLOAD_TERMINAL_STATUSES = frozenset({UPLOAD_PROCESSED, UPLOAD_LINKAGE_FAILURE})

#: The longest upload ``comment`` Metrika keeps (api-notes §3.2); our comments name pipeline, site, day.
MAX_COMMENT = 255

# --------------------------------------------------------------------------------------------------
# Calltouch: plans imports (seed 001; api-notes §2)
# --------------------------------------------------------------------------------------------------

#: ``data.status`` of ``plans-import/{importLogId}/status``: literally these strings (with the dots).
PLANS_SUCCESS = "success"
PLANS_IN_PROGRESS = "in progress..."
PLANS_ERROR = "error"
#: Every status but ``in progress...`` is final; anything but ``success`` counts as failed.
PLANS_TERMINAL_STATUSES = frozenset({PLANS_SUCCESS, PLANS_ERROR})

#: Plans ledger entry states (see :mod:`calltouch_metrika.storage`): sent, awaiting a status; imported.
LEDGER_SENT = "sent"
LEDGER_SUCCEEDED = "succeeded"
