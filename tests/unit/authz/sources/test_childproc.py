"""The serving side of the checking child: quick GIL switches during an activation, the
collector paused while an engine is built."""

from __future__ import annotations

import gc
import sys

from authz.sources.childproc import GcPause


def test_pause_holds_the_collector_and_hands_the_gil_over_often_then_restores() -> None:
    before = sys.getswitchinterval()
    assert gc.isenabled()
    pause = GcPause(switch_interval=0.0002)
    with pause.paused():
        assert not gc.isenabled()
        assert sys.getswitchinterval() <= 0.0002 + 1e-9
        with pause.paused():  # nested (main and shadow gates): still paused
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    assert sys.getswitchinterval() == before


def test_pause_keeps_a_disabled_collector_disabled() -> None:
    gc.disable()
    try:
        with GcPause().paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_quick_switches_alone_leave_the_collector_running() -> None:
    before = sys.getswitchinterval()
    pause = GcPause(switch_interval=0.0001)
    with pause.quick_switches():  # a whole activation
        assert gc.isenabled()
        assert sys.getswitchinterval() <= 0.0001 + 1e-9
        with pause.paused():  # taking in the answer
            assert not gc.isenabled()
        assert gc.isenabled()
        assert sys.getswitchinterval() <= 0.0001 + 1e-9  # still within the activation
    assert sys.getswitchinterval() == before
