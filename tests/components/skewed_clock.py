"""Imported first by a worker (``-I skewed_clock,...``): its wall clock runs
``MOTION_TEST_CLOCK_SKEW`` seconds off (ahead if positive), as a host whose clock
drifted. ``time.time`` is what Python code, motion's included, reads."""

from __future__ import annotations

import os
import time

_real = time.time
_skew = float(os.environ.get("MOTION_TEST_CLOCK_SKEW", "0"))
time.time = lambda: _real() + _skew
