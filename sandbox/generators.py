"""Deterministic synthetic data: Calltouch calls and requests (leads) per (seed, site, day).

Everything here is a pure function of its arguments: the random generator is seeded with the
string ``f"{seed}:{site_id}:{day}"`` (string seeds hash the same in every process), so the same
inputs give the same records byte for byte, in any process. The attributes filters read come from
per-site cycles (:func:`call_attributes`, :func:`request_attributes`), so how many calls of a day pass a
filter, or which requests do, is known without generating the day. The hot path (base call records) is
written for speed: 100,000 calls for one day take about a second; the optional blocks
(``callTags``, ``comments``, ``orders``, ``mapVisits``, ``yandexDirect``) are derived lazily, per
call, only for the records actually returned.

Identifier namespace (what the Metrika side treats as "known", see :func:`is_known_identifier`):
every generated ``yaClientId`` is 19 digits, the first 10 being the unix time of the visitor's
first visit (>= 1,500,000,000), the last 9 random; every generated ``yclid`` (in landing URLs of
Yandex Direct calls) is 20 digits starting with ``7``; every generated ``ctClientId`` (used as a
``UserId``) is a 9-digit integer starting with ``5``.
"""

from __future__ import annotations

import hashlib
import random
import re
from array import array
from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

NOT_SET = "<не указано>"

# (source, medium, utmSource, utmMedium, campaigns, keywords, ref, weight, yandex_direct, google_ads)
_PROFILES: list[tuple[str, str, str, str, tuple[str, ...], tuple[str, ...], str, int, bool, bool]] = [
    (
        "yandex",
        "cpc",
        "yandex",
        "cpc",
        ("brand_msk", "generic_spb", "retargeting", "распродажа_ноябрь"),
        ("купить диван", "диван недорого", "мебель москва", "угловой диван"),
        "https://yandex.ru/",
        30,
        True,
        False,
    ),
    (
        "google",
        "cpc",
        "google",
        "cpc",
        ("search_brand", "search_generic"),
        ("sofa moscow", "купить кресло", "мебель со скидкой"),
        "https://www.google.com/",
        12,
        False,
        True,
    ),
    ("(direct)", "(none)", NOT_SET, NOT_SET, (NOT_SET,), (NOT_SET,), "", 20, False, False),
    (
        "yandex",
        "organic",
        NOT_SET,
        NOT_SET,
        (NOT_SET,),
        ("(not set)",),
        "https://yandex.ru/",
        18,
        False,
        False,
    ),
    (
        "google",
        "organic",
        NOT_SET,
        NOT_SET,
        (NOT_SET,),
        ("(not set)",),
        "https://www.google.com/",
        6,
        False,
        False,
    ),
    (
        "vk.com",
        "referral",
        "vk",
        "social",
        ("vk_target_осень",),
        (NOT_SET,),
        "https://vk.com/",
        6,
        False,
        False,
    ),
    (
        "avito.ru",
        "referral",
        NOT_SET,
        NOT_SET,
        (NOT_SET,),
        (NOT_SET,),
        "https://www.avito.ru/",
        4,
        False,
        False,
    ),
    ("email", "newsletter", "sendpulse", "email", ("digest_2024",), (NOT_SET,), "", 4, False, False),
]
_PROFILE_CUM: list[int] = []
_acc = 0
for _p in _PROFILES:
    _acc += _p[7]
    _PROFILE_CUM.append(_acc)
del _acc, _p

_STATIC_SOURCES = [
    ("Наружная реклама", "offline", "Билборды"),
    ("Визитки", "offline", "Визитки"),
    ("2ГИС", "referral", "Справочники"),
]
_CITIES = [
    "Москва",
    "Москва",
    "Москва",
    "Санкт-Петербург",
    "Санкт-Петербург",
    "Казань",
    "Новосибирск",
    "Екатеринбург",
    "Нижний Новгород",
    "Краснодар",
    "Самара",
    "Химки",
    "Подольск",
    "Минск",
    "Алматы",
]
_PATHS = [
    "/",
    "/catalog/divany/",
    "/catalog/kresla/",
    "/akcii/",
    "/kontakty/",
    "/dostavka/",
    "/catalog/divany/uglovoy-milan/",
    "/blog/kak-vybrat-divan/",
]
_DEVICES = [
    ("desktop", "Windows", "Chrome"),
    ("desktop", "Mac OS", "Safari"),
    ("mobile", "Android", "Chrome"),
    ("mobile", "iOS", "Safari"),
    ("tablet", "iOS", "Safari"),
    ("mobile", "Android", "Yandex Browser"),
]
_UA = {
    "Chrome": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/119.0.0.0 Safari/537.36",
    "Safari": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.1 Mobile/15E148 Safari/604.1",
    "Yandex Browser": "Mozilla/5.0 (Linux; Android 13) AppleWebKit/537.36 (KHTML, like Gecko) "
    "YaBrowser/23.11.0 Mobile Safari/537.36",
}
_MANAGERS = ["Иванова Анна", "Петров Сергей", "Сидорова Мария", None, None]
_TAGS = [
    ("Качество", "MANUAL", "Целевой"),
    ("Качество", "MANUAL", "Спам"),
    ("", "AUTO-PR", "Повторный"),
    ("Тематика", "MANUAL", "Консультация"),
    ("Тематика", "MANUAL", "Заказ"),
    ("Тематика", "MANUAL", "Доставка, самовывоз"),
    ("", "AUTO-PR", "Жалоба"),
]
_COMMENTS = [
    "Клиент просил перезвонить после 18:00",
    "Уточнил наличие, оформил заказ\n",
    "Не дозвонились",
    "Спросил про доставку в «Химки»",
    "Цена не устроила",
]
_HOUR_WEIGHTS = [1, 1, 1, 1, 1, 2, 4, 10, 30, 60, 80, 85, 80, 75, 80, 80, 75, 65, 45, 30, 20, 12, 6, 3]
_HOUR_CUM: list[int] = []
_acc = 0
for _w in _HOUR_WEIGHTS:
    _acc += _w
    _HOUR_CUM.append(_acc)
del _acc, _w

SITE_NAMES = {10001: "Мебельный салон «Диван-Град»", 10002: "Сервисный центр «Ремонт+»"}

_CLIENT_ID_RE = re.compile(r"^[0-9]{19}$")
_YCLID_RE = re.compile(r"^7[0-9]{19}$")
_USER_ID_RE = re.compile(r"^5[0-9]{8}$")


def is_known_identifier(kind: str, value: str, now_ts: float) -> bool:
    """Whether Metrika "knows" a visitor identifier of ``kind`` (CLIENT_ID, USER_ID or YCLID).

    Known means: it belongs to the generator's namespace (module docstring). A ClientId must also
    have a first-visit time not after ``now_ts``. So generated calls link, ``ClientId=999`` does not.
    """
    if kind == "CLIENT_ID":
        return bool(_CLIENT_ID_RE.match(value)) and 1_500_000_000 <= int(value[:10]) <= now_ts
    if kind == "YCLID":
        return bool(_YCLID_RE.match(value))
    if kind == "USER_ID":
        return bool(_USER_ID_RE.match(value))
    return False


def site_hostname(site_id: int) -> str:
    """Hostname of the generated site (stable per site)."""
    return {10001: "divan-grad.ru", 10002: "remont-plus.ru"}.get(site_id, f"site{site_id}.example.ru")


def site_name(site_id: int) -> str:
    """Display name of the generated site."""
    return SITE_NAMES.get(site_id, f"Сайт {site_id}")


def _fmt_dt(dt: datetime) -> str:
    return dt.strftime("%d/%m/%Y %H:%M:%S")


def _day_clock(day: date, tz: ZoneInfo) -> tuple[int, int]:
    """Unix time of local midnight of ``day`` and the local day's length in seconds (DST-aware)."""
    start = datetime(day.year, day.month, day.day, tzinfo=tz)
    nxt = day + timedelta(days=1)
    end = datetime(nxt.year, nxt.month, nxt.day, tzinfo=tz)
    return int(start.timestamp()), int(end.timestamp()) - int(start.timestamp())


def _caller_number(rng: random.Random) -> str:
    r = rng.random()
    digits = f"{rng.randrange(10**9):09d}"
    if r < 0.58:
        return "79" + digits
    if r < 0.72:
        return "89" + digits
    if r < 0.82:
        return f"+7 (9{digits[:2]}) {digits[2:5]}-{digits[5:7]}-{digits[7:9]}"
    if r < 0.88:
        return "+79" + digits
    if r < 0.91:
        return "7495" + digits[:7]  # Moscow landline
    if r < 0.94:
        return "375" + digits  # Belarus
    if r < 0.96:
        return "77" + digits  # Kazakhstan
    if r < 0.97:
        return "998" + digits  # Uzbekistan
    return rng.choice(["", "anonymous", "12345", "7999123", "+7 (999) 12"])  # malformed


@lru_cache(maxsize=16)
def _site_numbers(seed: str, site_id: int) -> tuple[list[str], list[str]]:
    rng = random.Random(f"{seed}:{site_id}:numbers")
    tracked = [f"7495{rng.randrange(10**7):07d}" for _ in range(12)]
    redirect = [f"7{rng.choice(['495', '499', '916', '926'])}{rng.randrange(10**7):07d}" for _ in range(3)]
    return tracked, redirect


class CallsCache:
    """Small LRU of generated days, keyed by (seed, site_id, day, volume, timezone)."""

    def __init__(self, size: int = 12) -> None:
        self.size = size
        self._data: OrderedDict[tuple[str, int, date, int, str], list[dict[str, Any]]] = OrderedDict()
        #: days generated so far (here or by callers that ``put`` what they generated); for GET /_sandbox/state
        self.generated = 0

    def get(self, seed: str, site_id: int, day: date, volume: int, tz_name: str) -> list[dict[str, Any]]:
        """Base call records of one day (generated once, then served from the cache)."""
        key = (seed, site_id, day, volume, tz_name)
        hit = self._data.get(key)
        if hit is not None:
            self._data.move_to_end(key)
            return hit
        records = generate_calls(seed, site_id, day, volume, tz_name)
        self.generated += 1
        self.put(key, records)
        return records

    def peek(self, key: tuple[str, int, date, int, str]) -> list[dict[str, Any]] | None:
        """The cached records of ``key`` (seed, site_id, day, volume, timezone), or None; never generates."""
        hit = self._data.get(key)
        if hit is not None:
            self._data.move_to_end(key)
        return hit

    def put(self, key: tuple[str, int, date, int, str], records: list[dict[str, Any]]) -> None:
        """Store records generated elsewhere (e.g. in a worker thread), evicting the oldest day."""
        self._data[key] = records
        self._data.move_to_end(key)
        while len(self._data) > self.size:
            self._data.popitem(last=False)


#: Length of a site's cycle of call attributes (:func:`call_attributes`).
ATTRIBUTE_CYCLE = 1 << 14

#: One call's filter-relevant attributes: (static source index or -1, profile index or -1 for a static call,
#: campaign index, keyword index, ``utmContent`` number (0: not set), successful, duration, unique, target,
#: callback, direct0).
CallAttributes = tuple[int, int, int, int, int, bool, int, bool, bool, bool, bool]


@lru_cache(maxsize=8)
def call_attributes(seed: str, site_id: int) -> tuple[CallAttributes, ...]:
    """The site's cycle of :data:`ATTRIBUTE_CYCLE` call attributes, drawn independently (pure in its arguments).

    Every attribute a calls-diary filter reads (flags, source and utm fields, ``attribution=0``'s
    ``(direct)`` switch, static or not, so whether the call has a session) comes from this cycle: the calls
    of a day take, in time order, the ``volume`` entries that start at :func:`attribute_offset` (wrapping
    around). So how many calls of a day pass a filter is arithmetic on the cycle (:func:`window_count`),
    without generating the day. About 70 ms once per (seed, site).
    """
    rng = random.Random(f"{seed}:{site_id}:attributes")
    rnd = rng.random
    randrange = rng.randrange
    n_profiles = len(_PROFILES)
    out: list[CallAttributes] = []
    for _ in range(ATTRIBUTE_CYCLE):
        static = rnd() < 0.12
        successful = rnd() < 0.8
        duration = int(8 + rnd() ** 2 * 900) if successful else 0
        unique = rnd() < 0.62
        target = successful and duration >= 30 and rnd() < 0.85
        if static:
            src = int(rnd() * len(_STATIC_SOURCES))
            out.append((src, -1, 0, 0, 0, successful, duration, unique, target, False, False))
            continue
        callback = rnd() < 0.07
        x = rnd() * _PROFILE_CUM[-1]
        profile = 0
        while _PROFILE_CUM[profile] <= x and profile < n_profiles - 1:
            profile += 1
        p = _PROFILES[profile]
        campaign = int(rnd() * len(p[4]))
        keyword = int(rnd() * len(p[5]))
        ad = 0 if p[2] == NOT_SET else randrange(100, 999)
        direct0 = profile != 2 and rnd() < 0.2
        out.append(
            (-1, profile, campaign, keyword, ad, successful, duration, unique, target, callback, direct0)
        )
    return tuple(out)


def attribute_offset(seed: str, site_id: int, day: date) -> int:
    """Where ``day``'s calls start in the site's attribute cycle (a hash of seed, site and day)."""
    digest = hashlib.blake2b(f"{seed}:{site_id}:{day.toordinal()}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % ATTRIBUTE_CYCLE


def attribute_fields(entry: CallAttributes) -> dict[str, Any]:
    """The record fields (as :func:`generate_calls` sets them) one attribute entry determines.

    ``_session`` (private, not a record key): whether the call has a session (it is not static).
    """
    static_src, profile, campaign, keyword_i, ad, successful, duration, unique, target, callback, direct0 = (
        entry
    )
    if profile < 0:
        src, med, _pool = _STATIC_SOURCES[static_src]
        utm = (NOT_SET, NOT_SET, NOT_SET, NOT_SET, NOT_SET)
        keyword = ""
    else:
        p = _PROFILES[profile]
        src, med, keyword = p[0], p[1], p[5][keyword_i]
        utm = (
            p[2],
            p[3],
            p[4][campaign],
            f"ad{ad}" if ad else NOT_SET,
            keyword if p[3] == "cpc" else NOT_SET,
        )
    return {
        "successful": successful,
        "duration": duration,
        "uniqueCall": unique,
        "targetCall": target,
        "uniqTargetCall": unique and target,
        "callbackCall": callback,
        "source": src,
        "medium": med,
        "keyword": keyword,
        "utmSource": utm[0],
        "utmMedium": utm[1],
        "utmCampaign": utm[2],
        "utmContent": utm[3],
        "utmTerm": utm[4],
        "_profile": profile,
        "_direct0": direct0,
        "_session": profile >= 0,
    }


def attribute_prefix(seed: str, site_id: int, keep: Callable[[dict[str, Any]], bool]) -> array[int]:
    """Prefix sums of ``keep`` over the site's attribute cycle: ``out[k]`` = entries among the first ``k`` kept.

    ``keep`` receives :func:`attribute_fields` of each entry. Length ``ATTRIBUTE_CYCLE + 1``; ~20 ms.
    """
    out = array("l", [0])
    total = 0
    seen: dict[CallAttributes, bool] = {}
    for entry in call_attributes(seed, site_id):
        hit = seen.get(entry)
        if hit is None:
            hit = seen[entry] = bool(keep(attribute_fields(entry)))
        total += hit
        out.append(total)
    return out


def window_count(prefix: Sequence[int], offset: int, volume: int) -> int:
    """How many of ``volume`` cycle entries from ``offset`` (wrapping) are kept, given :func:`attribute_prefix`."""
    cycle = len(prefix) - 1
    full, rest = divmod(volume, cycle)
    count = full * prefix[cycle]
    end = offset + rest
    if end <= cycle:
        return count + prefix[end] - prefix[offset]
    return count + prefix[cycle] - prefix[offset] + prefix[end - cycle]


def generate_calls(seed: str, site_id: int, day: date, volume: int, tz_name: str) -> list[dict[str, Any]]:
    """Base call records (no optional blocks) of ``site_id`` on local ``day``, sorted by time.

    Private keys starting with ``_`` (``_session_ts``, ``_profile``, ``_direct0``) drive filters and
    lazy blocks and are never sent.
    """
    rng = random.Random(f"{seed}:{site_id}:{day.isoformat()}")
    tz = ZoneInfo(tz_name)
    midnight, day_seconds = _day_clock(day, tz)
    constant_offset = day_seconds == 86400
    prefix = day.strftime("%d/%m/%Y ")
    tracked, redirect = _site_numbers(str(seed), site_id)
    host = site_hostname(site_id)
    sname = site_name(site_id)
    hours = rng.choices(range(24), cum_weights=_HOUR_CUM, k=volume)
    secs = sorted(h * 3600 + int(rng.random() * 3600) for h in hours)
    if not constant_offset:  # a 23- or 25-hour day: keep every call inside the local day
        secs = [sec * day_seconds // 86400 for sec in secs]
    base_id = (day.toordinal() * 100_000) * 1000 + site_id % 1000
    rnd = rng.random
    randrange = rng.randrange
    records: list[dict[str, Any]] = []
    append = records.append
    n_cities = len(_CITIES)
    n_paths = len(_PATHS)
    attributes = call_attributes(str(seed), site_id)
    cycle = len(attributes)
    offset = attribute_offset(str(seed), site_id, day)
    for i, sec in enumerate(secs):
        ts = midnight + sec
        if constant_offset:
            h, rem = divmod(sec, 3600)
            m, s = divmod(rem, 60)
            date_str = f"{prefix}{h:02d}:{m:02d}:{s:02d}"
        else:
            date_str = _fmt_dt(datetime.fromtimestamp(ts, tz))
        (
            static_src,
            profile,
            campaign_i,
            keyword_i,
            ad,
            successful,
            duration,
            unique,
            target,
            callback,
            direct0,
        ) = attributes[(offset + i) % cycle]
        waiting = int(rnd() * (25 if successful else 60))
        city = _CITIES[int(rnd() * n_cities)]
        if profile < 0:
            static = True
            src, med, pool = _STATIC_SOURCES[static_src]
            utm = (NOT_SET, NOT_SET, NOT_SET, NOT_SET, NOT_SET)
            keyword = ""
            ref = None
            url = None
            call_url = None
            session_id = None
            session_ts = None
            ya_client_id = None
            ga_client_id = None
            ct_client_id = None
            device = ("", "", "")
        else:
            static = False
            p = _PROFILES[profile]
            src, med = p[0], p[1]
            keyword = p[5][keyword_i]
            utm = (
                p[2],
                p[3],
                p[4][campaign_i],
                f"ad{ad}" if ad else NOT_SET,
                keyword if p[3] == "cpc" else NOT_SET,
            )
            pool = "Динамический пул"
            ref = p[6] or None
            path = _PATHS[int(rnd() * n_paths)]
            url = f"https://{host}{path}"
            if p[8]:
                url += f"?utm_source=yandex&utm_medium=cpc&yclid=7{randrange(10**19):019d}"
            call_url = f"https://{host}{_PATHS[int(rnd() * n_paths)]}"
            session_id = 300_000_000 + (day.toordinal() % 1000) * 100_000 + i
            back = 0 if rnd() < 0.75 else int(rnd() * 3 * 86400)
            session_ts = ts - int(rnd() * 1800) - back
            first_visit = session_ts - int(rnd() * 60 * 86400)
            ya_client_id = f"{first_visit}{randrange(10**8, 10**9)}" if rnd() < 0.8 else None
            ga_client_id = f"{randrange(10**9, 2 * 10**9)}.{first_visit}" if rnd() < 0.55 else None
            ct_client_id = 500_000_000 + randrange(100_000_000)
            device = _DEVICES[int(rnd() * len(_DEVICES))]
        append(
            {
                "callId": base_id + i * 1000,
                "date": date_str,
                "timestamp": ts,
                "duration": duration,
                "waitingConnect": waiting,
                "successful": successful,
                "uniqueCall": unique,
                "targetCall": target,
                "uniqTargetCall": unique and target,
                "callbackCall": callback,
                "callphase": "callconnected" if successful else "callmissed",
                "statusDetails": "Успешный звонок" if successful else "Пропущенный звонок",
                "callerNumber": _caller_number(rng),
                "phoneNumber": tracked[int(rnd() * len(tracked))],
                "redirectNumber": redirect[int(rnd() * len(redirect))],
                "subPoolName": pool,
                "source": src,
                "medium": med,
                "keyword": keyword,
                "city": city,
                "hostname": host,
                "ref": ref,
                "url": url,
                "callUrl": call_url,
                "utmSource": utm[0],
                "utmMedium": utm[1],
                "utmCampaign": utm[2],
                "utmContent": utm[3],
                "utmTerm": utm[4],
                "sessionId": session_id,
                "sessionDate": None
                if session_ts is None
                else _fmt_dt(datetime.fromtimestamp(session_ts, tz)),
                "yaClientId": ya_client_id,
                "clientId": ga_client_id,
                "ctClientId": ct_client_id,
                "ctCallerId": 700_000_000 + randrange(100_000_000),
                "ctGlobalId": None if static else 800_000_000 + randrange(100_000_000),
                "userAgent": _UA.get(device[2]) if device[2] else None,
                "ip": None if static else f"95.{randrange(1, 255)}.{randrange(255)}.{randrange(1, 255)}",
                "device": device[0] or None,
                "os": device[1] or None,
                "browser": device[2] or None,
                "attribution": 1,
                "manager": _MANAGERS[int(rnd() * len(_MANAGERS))],
                "siteId": site_id,
                "siteName": sname,
                "additionalTags": [],
                "attrs": None,
                "_session_ts": session_ts,
                "_profile": profile,
                "_direct0": direct0,
            }
        )
    return records


def _pretty_phone(number: str) -> str:
    """``+7 (9xx) xxx-xx-xx`` for a Russian number, else the number as given."""
    digits = re.sub(r"\D", "", number)
    if len(digits) == 11 and digits[0] in "78":
        return f"+7 ({digits[1:4]}) {digits[4:7]}-{digits[7:9]}-{digits[9:11]}"
    return number


def callback_info(seed: str, record: dict[str, Any]) -> dict[str, Any]:
    """``callbackInfo`` of a callback call (``withCallbackInfo=true``): the callback widget's form fields.

    The shape is seed 004's ``widgetInfo`` (``{"fields": [{"name", "value"[, "type", "title"]}]}``), which
    the calls diary is inferred to share for its callback widget (api-notes §1.4 lists the block only).
    Deterministic per seed and callId.
    """
    rng = random.Random(f"{seed}:callback:{record['callId']}")
    fields: list[dict[str, Any]] = [
        {"name": "Имя", "value": rng.choice(_NAMES) or "Аноним"},
        {
            "name": "Номер телефона",
            "value": _pretty_phone(record["callerNumber"]),
            "type": "phone",
            "title": None,
        },
    ]
    if rng.random() < 0.3:
        fields.append(
            {"name": "Удобное время звонка", "value": rng.choice(["Сейчас", "После 18:00", "Утром"])}
        )
    return {"fields": fields}


def call_blocks(seed: str, record: dict[str, Any], tz_name: str) -> dict[str, Any]:
    """The optional blocks of one call (deterministic per seed and callId)."""
    rng = random.Random(f"{seed}:call:{record['callId']}")
    tz = ZoneInfo(tz_name)
    ts = record["timestamp"]
    tags: list[dict[str, Any]] = []
    if rng.random() < 0.45:
        for _ in range(rng.choice((1, 1, 2))):
            cat, typ, name = rng.choice(_TAGS)
            tags.append({"category": cat or name, "type": typ, "names": [name]})
    comments: list[dict[str, Any]] = []
    if rng.random() < 0.15:
        comments.append(
            {
                "commentId": rng.randrange(10_000, 99_999),
                "callId": record["callId"],
                "comment": rng.choice(_COMMENTS),
                "partyId": 19688,
                "partyName": "manager@example.ru",
            }
        )
    orders: list[dict[str, Any]] = []
    if record["targetCall"] and rng.random() < 0.35:
        order_id = rng.randrange(100_000, 999_999)
        planned = float(rng.randrange(1_500, 250_000))
        done = rng.random() < 0.6
        created = datetime.fromtimestamp(ts + 600, tz)
        orders.append(
            {
                "orderId": order_id,
                "orderNumber": f"CRM-{order_id}",
                "orderDate": _fmt_dt(created),
                "createdDate": _fmt_dt(created),
                "completedDate": _fmt_dt(created + timedelta(days=2)) if done else None,
                "plannedAmount": planned,
                "completedAmount": round(planned * rng.uniform(0.8, 1.1), 2) if done else None,
            }
        )
    visits: list[dict[str, Any]] = []
    direct: dict[str, int] | None = None
    google: dict[str, int] | None = None
    if record["sessionId"] is not None:
        profile = _PROFILES[record["_profile"]]
        for k in range(rng.choice((1, 1, 2, 3))):
            vts = record["_session_ts"] - k * rng.randrange(3600, 3 * 86400)
            visits.append(
                {
                    "sessionId": record["sessionId"] - k * 7,
                    "sessionDate": _fmt_dt(datetime.fromtimestamp(vts, tz)),
                    "source": record["source"] if k == 0 else "(direct)",
                    "medium": record["medium"] if k == 0 else "(none)",
                    "utmSource": record["utmSource"] if k == 0 else NOT_SET,
                    "utmMedium": record["utmMedium"] if k == 0 else NOT_SET,
                    "utmCampaign": record["utmCampaign"] if k == 0 else NOT_SET,
                    "utmContent": record["utmContent"] if k == 0 else NOT_SET,
                    "utmTerm": record["utmTerm"] if k == 0 else NOT_SET,
                    "keyword": record["keyword"] if k == 0 else "(not set)",
                    "city": record["city"],
                    "ip": record["ip"],
                    "userAgent": record["userAgent"],
                    "url": record["url"],
                    "ref": record["ref"] or "",
                    "additionalTags": [],
                    "guaClientId": record["clientId"],
                    "ctClientId": record["ctClientId"],
                    "ctGlobalId": record["ctGlobalId"],
                }
            )
        if profile[8]:
            direct = {
                "campaignId": 32_000_000 + rng.randrange(1000),
                "adGroupId": 5_000_000_000 + rng.randrange(10**6),
                "adId": 14_000_000_000 + rng.randrange(10**6),
                "criteriaId": 40_000_000_000 + rng.randrange(10**6),
            }
        if profile[9]:
            google = {
                "campaignId": 35_000_000 + rng.randrange(1000),
                "adGroupId": 134_000_000 + rng.randrange(10**5),
                "creativeId": 23_000_000 + rng.randrange(10**5),
                "criteriaId": 4_324_000_000 + rng.randrange(10**6),
            }
    return {
        "callTags": tags,
        "comments": comments,
        "orders": orders,
        "mapVisits": visits,
        "yandexDirect": direct,
        "googleAdWords": google,
    }


# --------------------------------------------------------------------------------------------- requests

_SUBJECTS = [
    "Заявка на звонок",
    "Заказ обратного звонка",
    "Форма «Рассчитать стоимость»",
    "Онлайн-чат",
    "Заявка с сайта: доставка",
    "Умная заявка",
]
_NAMES = ["Коля", "Андрей", "Мария Петровна", "Ольга", "Иван Иванович", None]


#: Length of a site's cycle of request attributes (:func:`request_attributes`).
REQUEST_ATTRIBUTE_CYCLE = 1 << 12

#: One request's filter-relevant attributes: (has a session, profile index, city index, keyword index,
#: manager index, widget (a "smart" request), subject index).
RequestAttributes = tuple[bool, int, int, int, int, bool, int]


@lru_cache(maxsize=8)
def request_attributes(seed: str, site_id: int) -> tuple[RequestAttributes, ...]:
    """The site's cycle of request attributes, as :func:`call_attributes` for calls (pure in its arguments).

    Every attribute a requests-journal filter on the request itself reads (``subject``, ``manager``, the
    session's ``keywords``/``city``/``source``/``medium``) comes from it: request ``i`` of a day takes entry
    ``(request_offset(...) + i) % REQUEST_ATTRIBUTE_CYCLE``. So the journal finds which requests of a day pass
    those filters without generating them (:func:`window_positions`), and generates only those.
    """
    rng = random.Random(f"{seed}:{site_id}:request-attributes")
    rnd = rng.random
    randrange = rng.randrange
    out: list[RequestAttributes] = []
    for _ in range(REQUEST_ATTRIBUTE_CYCLE):
        has_session = rnd() < 0.85
        profile = randrange(len(_PROFILES))
        city = randrange(len(_CITIES))
        keyword = randrange(len(_PROFILES[profile][5]))
        manager = randrange(len(_MANAGERS))
        widget = rnd() < 0.25
        subject = len(_SUBJECTS) - 1 if widget else randrange(len(_SUBJECTS) - 1)
        out.append((has_session, profile, city, keyword, manager, widget, subject))
    return tuple(out)


def request_offset(seed: str, site_id: int, day: date) -> int:
    """Where ``day``'s requests start in the site's request attribute cycle (a hash of seed, site and day)."""
    digest = hashlib.blake2b(f"{seed}:{site_id}:{day.toordinal()}:requests".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % REQUEST_ATTRIBUTE_CYCLE


def request_attribute_fields(entry: RequestAttributes) -> dict[str, Any]:
    """The request fields one attribute entry determines, shaped as the record (``session`` None or a dict)."""
    has_session, profile, city, keyword, manager, _widget, subject = entry
    p = _PROFILES[profile]
    session = (
        {"keywords": p[5][keyword], "city": _CITIES[city], "source": p[0], "medium": p[1]}
        if has_session
        else None
    )
    return {"subject": _SUBJECTS[subject], "manager": _MANAGERS[manager], "session": session}


def attribute_hits(
    entries: Sequence[Any], fields: Callable[[Any], dict[str, Any]], keep: Callable[[dict[str, Any]], bool]
) -> list[int]:
    """The sorted positions of ``entries`` whose ``fields(entry)`` ``keep`` accepts."""
    seen: dict[Any, bool] = {}
    out: list[int] = []
    for k, entry in enumerate(entries):
        hit = seen.get(entry)
        if hit is None:
            hit = seen[entry] = bool(keep(fields(entry)))
        if hit:
            out.append(k)
    return out


def window_positions(hits: Sequence[int], offset: int, volume: int, cycle: int) -> list[int]:
    """The indexes ``i < volume`` whose cycle position ``(offset + i) % cycle`` is in ``hits`` (sorted), in order."""
    out: list[int] = []
    start, pos, remaining = 0, offset, volume
    while remaining:
        seg = min(remaining, cycle - pos)
        lo, hi = bisect_left(hits, pos), bisect_left(hits, pos + seg)
        out.extend(h - pos + start for h in hits[lo:hi])
        start, pos, remaining = start + seg, 0, remaining - seg
    return out


def generate_requests(
    seed: str,
    site_id: int,
    day: date,
    volume: int,
    tz_name: str,
    *,
    only: Sequence[int] | None = None,
) -> list[dict[str, Any]]:
    """Request (lead) records of ``site_id`` created on local ``day``, shaped as seed 004, in time order.

    Every block is included; the API layer removes the ones whose ``with*`` flag is off. Private
    keys (``_ts``, ``_session_ts``, ``_widget``) drive filters and are never sent. ``only``: generate just
    the requests of these indexes (ascending), each exactly as in the whole day: the day's clock times come
    from one generator, each request's other fields from its own (``f"{seed}:{site}:{day}:requests:{i}"``)
    and from the attribute cycle, so a request costs the same whichever others are generated.
    """
    day_rng = random.Random(f"{seed}:{site_id}:{day.isoformat()}:requests")
    tz = ZoneInfo(tz_name)
    midnight, day_seconds = _day_clock(day, tz)
    host = site_hostname(site_id)
    secs = sorted(day_rng.choices(range(24), cum_weights=_HOUR_CUM, k=volume))
    secs = sorted((h * 3600 + day_rng.randrange(3600)) * day_seconds // 86400 for h in secs)
    attributes = request_attributes(str(seed), site_id)
    cycle = len(attributes)
    offset = request_offset(str(seed), site_id, day)
    out: list[dict[str, Any]] = []
    for i in range(volume) if only is None else only:
        ts = midnight + secs[i]
        request_id = day.toordinal() * 100_000 + (site_id % 10) * 10_000 + i
        has_session, profile, city_i, keyword_i, manager_i, widget, subject_i = attributes[
            (offset + i) % cycle
        ]
        rng = random.Random(f"{seed}:{site_id}:{day.isoformat()}:requests:{i}")
        p = _PROFILES[profile]
        session_ts = (
            ts - rng.randrange(30, 3600) - (0 if rng.random() < 0.8 else rng.randrange(86400, 2 * 86400))
        )
        first_visit = session_ts - rng.randrange(60 * 86400)
        device = rng.choice(_DEVICES)
        city = _CITIES[city_i]
        keyword = p[5][keyword_i]
        url = f"https://{host}{rng.choice(_PATHS)}"
        session: dict[str, Any] | None = None
        visits: list[dict[str, Any]] = []
        if has_session:
            session = {
                "keywords": keyword,
                "city": city,
                "ip": f"95.163.{rng.randrange(255)}.{rng.randrange(1, 255)}/32",
                "browser": _UA[device[2]],
                "device": device[0],
                "os": device[1],
                "browserName": device[2],
                "source": p[0],
                "medium": p[1],
                "ref": p[6],
                "url": url,
                "utmSource": p[2],
                "utmMedium": p[3],
                "utmTerm": keyword if p[3] == "cpc" else NOT_SET,
                "utmContent": NOT_SET,
                "utmCampaign": rng.choice(p[4]),
                "guaClientId": f"{rng.randrange(10**9, 2 * 10**9)}.{first_visit}"
                if rng.random() < 0.5
                else None,
                "yaClientId": f"{first_visit}{rng.randrange(10**8, 10**9)}" if rng.random() < 0.7 else None,
                "ctGlobalId": 800_000_000 + rng.randrange(10**8),
                "sessionId": 400_000_000 + (day.toordinal() % 1000) * 10_000 + i,
                "additionalTags": [],
                "attribution": 1,
                "attrs": {"param1": "value1", "crm_stage": "новый"} if rng.random() < 0.3 else None,
            }
            for k in range(rng.choice((1, 2))):
                visits.append(
                    {
                        "utmSource": p[2] if k == 0 else NOT_SET,
                        "sessionDate": _fmt_dt(datetime.fromtimestamp(session_ts - k * 86400, tz)),
                        "city": city,
                        "ip": session["ip"],
                        "utmTerm": session["utmTerm"] if k == 0 else NOT_SET,
                        "utmContent": NOT_SET,
                        "userAgent": session["browser"],
                        "sessionId": session["sessionId"] - k,
                        "source": p[0] if k == 0 else "(direct)",
                        "medium": p[1] if k == 0 else "(none)",
                        "utmCampaign": session["utmCampaign"] if k == 0 else NOT_SET,
                        "url": url,
                        "ref": p[6] if k == 0 else "",
                        "additionalTags": [],
                        "utmMedium": p[3] if k == 0 else NOT_SET,
                        "guaClientId": session["guaClientId"],
                        "keyword": keyword if k == 0 else "(not set)",
                        "ctClientId": 500_000_000 + rng.randrange(10**8),
                        "ctGlobalId": session["ctGlobalId"],
                    }
                )
        digits = f"{rng.randrange(10**9):09d}"
        phone = rng.choice(
            ["79" + digits, "89" + digits, f"+7 (9{digits[:2]}) {digits[2:5]}-{digits[5:7]}-{digits[7:]}"]
        )
        email = rng.choice([f"client{i}@yandex.ru", f"user.{digits[:4]}@mail.ru", None])
        custom_number = rng.random() < 0.4
        orders: list[dict[str, Any]] = []
        if session is not None and rng.random() < 0.3:
            oid = rng.randrange(100_000, 999_999)
            amount = rng.randrange(500, 100_000)
            created_ms = (ts + 360) * 1000
            orders.append(
                {
                    "orderId": oid,
                    "callId": None,
                    "dateCreated": created_ms,
                    "status": "PENDING",
                    "realSum": f"{amount}.0000",
                    "offered": None,
                    "sent": datetime.fromtimestamp(ts, tz).strftime("%d.%m.%Y"),
                    "sum": f"{amount}.0000",
                    "isMarked": None,
                    "commentsCount": 0,
                    "currentAmount": amount,
                    "orderNumber": str(oid),
                    "orderSum": f"{amount}.0000",
                    "orderStatus": "PENDING",
                    "orderComments": "",
                    "session": dict(session),
                }
            )
        subject = _SUBJECTS[subject_i]
        name = rng.choice(_NAMES)
        unique = rng.random() < 0.7
        target = rng.random() < 0.6
        comments: list[dict[str, Any]] = []
        if rng.random() < 0.2:
            comments.append(
                {
                    "commentId": rng.randrange(1000, 9999),
                    "requestId": request_id,
                    "comment": rng.choice(_COMMENTS),
                    "partyId": 19688,
                    "partyName": "API",
                }
            )
        record: dict[str, Any] = {
            "date": ts * 1000 + rng.randrange(1000),
            "comments": comments,
            "requestType": rng.choice(["CLIENT_ORDER", "CALLBACK", "CHAT"]),
            "dateStr": _fmt_dt(datetime.fromtimestamp(ts, tz)),
            "manager": _MANAGERS[manager_i],
            "session": session,
            "subject": subject,
            "uniqTargetRequest": unique and target,
            "requestUrl": url,
            "mapVisits": visits,
            "uniqueRequest": unique,
            "widgetInfo": {
                "fields": [
                    {"name": "Имя", "value": name or "Аноним"},
                    {"name": "Номер телефона", "value": phone, "type": "phone", "title": None},
                ]
            },
            "RequestTags": (
                [
                    {
                        "category": "",
                        "type": "AUTO-CT",
                        "names": [rng.choice(["Тег заявки", "Целевой, Повторный"])],
                    }
                ]
                if rng.random() < 0.5
                else []
            ),
            "requestNumber": f"web-{request_id}" if custom_number else str(request_id),
            "requestId": request_id,
            "client": {
                "fio": name,
                "clientId": 600_000 + rng.randrange(100_000),
                "phones": [{"phoneNumber": phone, "phoneType": "OTHER"}],
                "contacts": [{"contactType": "EMAIL", "contactValue": email}] if email else [],
            },
            "orders": orders,
            "siteId": site_id,
            "targetRequest": target,
            "ctClientId": None if session is None else 500_000_000 + rng.randrange(10**8),
            "yandexDirect": (
                {
                    "campaignId": 32_515_134,
                    "adGroupId": 325_245_212_134,
                    "adId": 2_546_356_252,
                    "criteriaId": 254_251_323,
                }
                if session is not None and p[8]
                else None
            ),
            "googleAdWords": (
                {
                    "campaignId": 35_635_656,
                    "adGroupId": 134_524_245,
                    "creativeId": 23_134_141,
                    "criteriaId": 4_324_553_542,
                }
                if session is not None and p[9]
                else None
            ),
            "dcm": (
                [
                    {
                        "profileIdDCM": 1_411_789,
                        "floodlightConfigurationId": "10355394",
                        "floodlightActivityId": "10501143",
                        "requestStatus": "ERROR",
                        "requestErrors": "HTTP_AUTH_ERROR",
                    }
                ]
                if rng.random() < 0.1
                else []
            ),
            "customFields": [
                {"field": "name", "value": name or ""},
                {"field": "birthday", "value": "1990-01-01"},
            ],
            "_ts": ts,
            "_session_ts": session_ts if session is not None else None,
            "_widget": widget,
        }
        out.append(record)
    return out
