"""Retiring a replaced engine without stalling the checks that are being served.

A 10,000-policy engine is a few hundred thousand objects. Whoever drops the
last reference to it frees them all in one uninterrupted cascade — tenths of
a second holding the GIL, on the event loop if a check happened to hold that
last reference. :func:`retire` instead hands the engine to a thread of its
own that waits until nothing else holds it (in-flight checks finish on the
version they started with), then takes it apart a slice at a time
(:meth:`authz.engine.evaluation.Engine.dispose`), yielding the GIL in between. An engine
still held after ``grace`` seconds is left to be freed normally.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

__all__ = ["retire"]

# References to the engine while the thread looks at it: its local name and
# getrefcount's own argument.
_OWN_REFERENCES = 2


def retire(engine: Any, *, grace: float = 30.0, poll: float = 0.05) -> None:
    """Take ``engine`` apart in the background once nothing else holds it."""
    if engine is None or not callable(getattr(engine, "dispose", None)):
        return
    box = [engine]
    del engine
    thread = threading.Thread(
        target=_retire, args=(box, grace, poll), name="retire-engine", daemon=True
    )
    thread.start()


def _retire(box: list[Any], grace: float, poll: float) -> None:
    engine = box.pop()
    deadline = time.monotonic() + grace
    while sys.getrefcount(engine) > _OWN_REFERENCES and time.monotonic() < deadline:
        time.sleep(poll)
    if sys.getrefcount(engine) <= _OWN_REFERENCES:
        engine.dispose()
