"""Ctrl-C must interrupt a command blocked on a read or a wait, as in any Python program.

Importing Polars installs its own SIGINT handler with SA_RESTART (pola-rs/polars#21739): after
a Ctrl-C the kernel resumes the interrupted read or lock wait, so an ``aq_pp`` reading a pipe
that stays open (a terminal, ``ess stream``'s feed) never raises its KeyboardInterrupt.
"""

from __future__ import annotations

import signal
import threading


def python_handles_ctrl_c() -> None:
    """Put Python's own SIGINT handler (whatever it is: default, ignored) back after Polars.

    Polars' in-query interruption is lost, which costs little: our batches are bounded.
    """
    import polars  # noqa: F401  # its handler is installed on import: replace it afterwards

    if threading.current_thread() is not threading.main_thread():
        return
    current = signal.getsignal(signal.SIGINT)
    if current is not None:  # None: a handler not installed from Python, leave it alone
        signal.signal(signal.SIGINT, current)
