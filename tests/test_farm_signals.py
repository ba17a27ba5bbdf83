"""The driver's stop signals: the first asks for a graceful stop, the second exits at once."""

from __future__ import annotations

import os
import signal
import time

import pytest

from scheduler.signals import ImmediateExit, StopRequest


def test_first_signal_requests_a_stop_second_exits_at_once():
    before = signal.getsignal(signal.SIGTERM)
    with StopRequest() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested.wait(5)
        assert stop.signal_name == "SIGTERM"
        with pytest.raises(ImmediateExit) as exit_info:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)  # the handler raises at the next bytecode boundary, well before this ends
        assert exit_info.value.code == 128 + signal.SIGINT
    assert signal.getsignal(signal.SIGTERM) is before


def test_request_without_a_signal():
    stop = StopRequest()
    stop.request()
    assert stop.requested.is_set() and stop.signal_name is None
