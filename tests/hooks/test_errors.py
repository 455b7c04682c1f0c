"""Error answers -> typed errors: Calltouch's and Metrika's bodies (hooks/calltouch.py, hooks/metrika.py)."""

from __future__ import annotations

import json

import pytest

from calltouch_metrika.exceptions import AuthenticationError, NotFoundError, ValidationError
from calltouch_metrika.hooks._masking import Secrets
from calltouch_metrika.hooks.calltouch import calltouch_error
from calltouch_metrika.hooks.metrika import metrika_error

SEED_001 = {
    "auth": ({"message": "Access token не найден"}, AuthenticationError),
    "api": (
        {"meta": [], "data": {"type": "apiError", "apiErrorData": {"errorCode": 1, "errorMessage":
         "Синтаксическая ошибка JSON в запросе или запрос пустой", "errorDescription": None},
         "validationErrorData": None}},
        ValidationError,
    ),
    "violations": (
        {"meta": [], "data": {"type": "validationError", "apiErrorData": None, "validationErrorData": {
            "violations": [{"fieldPath": "items[0].source", "message": "Должно быть заполнено"},
                           {"fieldPath": "items", "message": "Эта коллекция должна содержать 1 элемент или больше."}]}}},
        ValidationError,
    ),
    "missing": ({"meta": [], "data": {"message": 'В запросе не указано обязательное поле "dateTo"'}}, ValidationError),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(SEED_001))
def test_calltouch_seed_001_bodies(case: str) -> None:
    body, kind = SEED_001[case]
    status = 401 if case == "auth" else 400
    err = calltouch_error(
        status, json.dumps(body, ensure_ascii=False), what="Calltouch site 1", secrets=Secrets()
    )
    assert type(err) is kind
    assert "Calltouch site 1" in str(err)
    if case == "violations":
        assert err.violations[0] == ("items[0].source", "Должно быть заполнено")
        assert "items: Эта коллекция" in str(err)
    if case == "missing":
        assert '"dateTo"' in str(err)


def test_metrika_error_bodies() -> None:
    body = {"errors": [{"error_type": "invalid_parameter", "message": "bad", "location": "file"}],
            "code": 400, "message": "bad"}  # fmt: skip
    err = metrika_error(400, json.dumps(body), what="Metrika counter 5", secrets=Secrets())
    assert isinstance(err, ValidationError) and err.violations == [("file", "invalid_parameter: bad")]
    assert isinstance(metrika_error(404, "{}", what="m", secrets=Secrets()), NotFoundError)
    auth = metrika_error(401, '{"message": "no"}', what="Metrika counter 5", secrets=Secrets())
    assert isinstance(auth, AuthenticationError) and "counter 5" in str(auth)


def test_metrika_403_names_the_cause_by_error_type() -> None:
    """api-notes §3.5: 403 ``invalid_token`` (a bad token) and 403 ``access_denied`` (no access to the counter)."""
    invalid = {"errors": [{"error_type": "invalid_token", "message": "Invalid oauth_token"}], "code": 403}
    denied = {"errors": [{"error_type": "access_denied", "message": "Access is denied"}], "code": 403}
    bad = metrika_error(403, json.dumps(invalid), what="Metrika counter 5", secrets=Secrets())
    assert (
        isinstance(bad, AuthenticationError) and "invalid or expired" in str(bad) and bad.status_code == 403
    )
    no_access = metrika_error(403, json.dumps(denied), what="Metrika counter 5", secrets=Secrets())
    assert "no access to this counter" in str(no_access)
