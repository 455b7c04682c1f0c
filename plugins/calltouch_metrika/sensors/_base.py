"""What our status sensors share: growing poke intervals, and "poke once, then defer" with a safety net.

Both :class:`~calltouch_metrika.sensors.metrika.UploadStatusSensor` and
:class:`~calltouch_metrika.sensors.calltouch.PlansImportStatusSensor` check once on the worker and,
if the answer is not final, hand the waiting to a trigger whose deadline is this sensor's ``timeout``
(the Google provider's deferral contract, style.md §2). With ``deferrable=False`` they poke or
reschedule through the sync hook with exponentially growing intervals capped at ``max_poke_interval``.

``deferrable`` defaults from ``AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE`` as provider operators do, except
that it is true when that variable is not set (Airflow's own default is false, and every generated
``airflow.cfg`` spells that default out; ours is to wait in the triggerer): :func:`default_deferrable`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue
from airflow.sdk.exceptions import AirflowSensorTimeout

from calltouch_metrika._utils import default_deferrable

__all__ = ["DeferrableStatusSensor", "default_deferrable"]

if TYPE_CHECKING:
    from airflow.sdk import Context
    from airflow.triggers.base import BaseTrigger


class DeferrableStatusSensor(BaseSensorOperator):
    """Base of a sensor that pokes once and then defers to a polling trigger (or pokes until done).

    :param deferrable: wait in the triggerer instead of on a worker (subclasses default it to
        :func:`default_deferrable`).
    :param poke_interval: seconds before the first re-check; later waits grow up to ``max_poke_interval``.
    :param max_poke_interval: the longest wait between two checks.
    :param timeout: seconds to wait in all.
    """

    def __init__(
        self,
        *,
        deferrable: bool,
        poke_interval: float,
        max_poke_interval: float,
        timeout: float,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("exponential_backoff", True)
        kwargs.setdefault("max_wait", max_poke_interval)
        super().__init__(poke_interval=poke_interval, timeout=timeout, **kwargs)
        self.deferrable = deferrable
        self.max_poke_interval = float(max_poke_interval)

    def poke_or_defer(
        self,
        context: Context,
        *,
        trigger: Callable[..., BaseTrigger],
        timeout_message: Callable[[AirflowSensorTimeout], str],
    ) -> Any:
        """Wait the way ``deferrable`` says; return the XCom value once done.

        Not deferrable: poke/reschedule until done; a timeout is re-raised with ``timeout_message(exc)``.
        Deferrable: poke once; if not done, defer to ``trigger(poll_interval=, max_poll_interval=,
        deadline=)`` (called after that poke, so it can watch only what is still pending).
        """
        if not self.deferrable:
            try:
                return super().execute(context)
            except AirflowSensorTimeout as exc:
                raise AirflowSensorTimeout(timeout_message(exc)) from None
        done = self.poke(context)
        if done:
            return done.xcom_value if isinstance(done, PokeReturnValue) else None
        grace = max(60.0, 2 * self.max_poke_interval)
        self.defer(
            trigger=trigger(
                poll_interval=self.poke_interval,
                max_poll_interval=self.max_poke_interval,
                deadline=time.time() + self.timeout,
            ),
            method_name="execute_complete",
            # the trigger reports its own, more helpful timeout first; this is a safety net
            timeout=timedelta(seconds=self.timeout + grace),
        )
