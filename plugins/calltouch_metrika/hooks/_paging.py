"""The concurrent day/page scheduler of paginated extraction (used by hooks/calltouch.py).

A range is fetched one day at a time, each day page by page: page 1 of a day tells how many pages
follow, and those go out at once, through the hook's process-wide limiter (the ``fetch`` callable sends
through it). Several days are in flight together, so extraction approaches the API's rate even with
slow answers; days come back in order, each as soon as it is complete, so memory stays bounded by the
lookahead. Full GC pauses are kept out while it runs (:func:`~calltouch_metrika.hooks._ratelimit.young_gc_only`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import date

from calltouch_metrika.hooks._ratelimit import young_gc_only


def fetch_days(
    the_days: list[date],
    fetch: Callable[[date, int], tuple[list[dict], int, int | None]],
    *,
    max_in_flight: int,
    thread_name_prefix: str = "pages",
) -> Iterator[tuple[date, list[dict], int | None]]:
    """Fetch every page of every day with ``max_in_flight`` threads; yield days in order.

    ``fetch(day, page)`` returns ``(records, page_total, records_total)``. Page 1 of a day tells how many
    pages follow; those go out at once. At most ``max_in_flight + 1`` days are open at a time.
    """
    lookahead = max_in_flight + 1
    pages: dict[date, dict[int, list[dict]]] = {}
    page_totals: dict[date, int] = {}
    totals: dict[date, int | None] = {}
    pool = ThreadPoolExecutor(max_workers=max_in_flight, thread_name_prefix=thread_name_prefix)
    pending: dict[Future, tuple[date, int]] = {}
    next_day = 0
    young_gc = young_gc_only()  # no long GC pauses that waste the limiter's slots (see its doc)
    young_gc.__enter__()
    try:
        while next_day < len(the_days) and next_day < lookahead:
            day = the_days[next_day]
            pending[pool.submit(fetch, day, 1)] = (day, 1)
            next_day += 1
        for position, day in enumerate(the_days):
            while not (day in page_totals and len(pages.get(day, {})) >= page_totals[day]):
                if not pending:  # pragma: no cover - would mean a bookkeeping bug, never a hang
                    raise RuntimeError(f"internal error: no request in flight for {day}")
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    got_day, page = pending.pop(future)
                    records, page_total, records_total = future.result()
                    pages.setdefault(got_day, {})[page] = records
                    if page == 1:
                        page_totals[got_day] = max(page_total, 1)
                        totals[got_day] = records_total
                        for extra in range(2, page_total + 1):
                            pending[pool.submit(fetch, got_day, extra)] = (got_day, extra)
            day_pages = pages.pop(day)
            records = [r for p in sorted(day_pages) for r in day_pages[p]]
            del day_pages
            yield day, records, totals.pop(day, None)
            del records
            if next_day < len(the_days) and next_day <= position + lookahead:
                upcoming = the_days[next_day]
                pending[pool.submit(fetch, upcoming, 1)] = (upcoming, 1)
                next_day += 1
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        young_gc.__exit__(None, None, None)
