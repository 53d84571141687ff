"""SIGINT/SIGTERM on the command line: our handler raises Interrupted, and a signal some other handler took
(as Dagster's does during a run) is still known afterwards, with its number."""

import os
import signal

import pytest

from mm_assets.interrupts import Interrupted, raise_if_interrupted, watch_interrupts


def test_sigterm_raises_interrupted_with_exit_code_143():
    before = signal.getsignal(signal.SIGTERM)  # SIG_DFL, or what an earlier in-process Dagster run left
    with pytest.raises(Interrupted) as caught, watch_interrupts():
        os.kill(os.getpid(), signal.SIGTERM)
    assert (str(caught.value), caught.value.exit_code) == ("interrupted by SIGTERM", 143)
    assert isinstance(caught.value, KeyboardInterrupt)
    assert signal.getsignal(signal.SIGTERM) is before, "the previous handler is back"


def test_a_signal_handled_elsewhere_is_still_reported():
    taken = []
    with watch_interrupts():
        previous = signal.signal(signal.SIGINT, lambda signo, _frame: taken.append(signo))  # Dagster's, in a run
        try:
            os.kill(os.getpid(), signal.SIGINT)
        finally:
            signal.signal(signal.SIGINT, previous)
        assert taken == [signal.SIGINT]
        with pytest.raises(Interrupted) as caught:
            raise_if_interrupted()
        assert caught.value.exit_code == 130
        raise_if_interrupted()  # reported once
    raise_if_interrupted()  # outside the block: nothing to report
