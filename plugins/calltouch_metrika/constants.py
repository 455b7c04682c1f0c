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

#: The Airflow pool the tasks that call Calltouch run in: it bounds how many of them wait on Calltouch's
#: 5 requests/s per IP at once (api-notes §1.6). The rate itself is kept by the shared limiter
#: (hooks/_shared_ratelimit.py); ``make up`` and docker compose create the pool with 4 slots.
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

#: ISO 4217 currency codes Metrika's ``Currency`` column takes (seed 000: "three-letter ISO 4217";
#: the sandbox answers ``Invalid Currency`` to any other code, as Metrika does: api-notes §3.3).
_CURRENCY_CODES = """
    AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN BWP BYN BZD
    CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF
    GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP
    LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB
    PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD SSP STN SVC SYP
    SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD UYU UZS VES VND VUV WST XAF XCD XOF XPF YER ZAR ZMW
    ZWL
"""
METRIKA_CURRENCIES = frozenset(_CURRENCY_CODES.split())

#: ``calltouch_calls_to_metrika__<pipeline>``: a pipeline's calls DAG.
CALLS_DAG_PREFIX = "calltouch_calls_to_metrika__"
#: ``calltouch_account_extract__<account>``: the DAG extracting every site of an account (issue 15).
ACCOUNT_DAG_PREFIX = "calltouch_account_extract__"


def account_dag_id(account: str) -> str:
    """The id of the DAG extracting account ``account``'s sites (one task per local day)."""
    return f"{ACCOUNT_DAG_PREFIX}{account}"
