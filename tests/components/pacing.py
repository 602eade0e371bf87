"""The load generators' pace: a steady rate of calls, and a back-off after a failed one."""

from __future__ import annotations

import time

#: how long a producer pauses after a failed call (Redis away: do not spin)
BACK_OFF = 0.05


class Pace:
    """Calls at ``rate`` per second; one that falls behind does not burst to catch up."""

    def __init__(self, rate: float) -> None:
        self.interval = 1 / rate
        self.next_at = time.monotonic()

    def next(self, failed: bool = False) -> None:
        """Wait until the next call is due (a failed call first backs off)."""
        if failed:
            time.sleep(BACK_OFF)
        self.next_at += self.interval
        delay = self.next_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            self.next_at = time.monotonic()
