"""Ctrl-C and SIGTERM while training: checkpoint, then stop, in one process or several.

One process stops at once (KeyboardInterrupt; the step under way is dropped and the last
complete one is saved). Under `accelerate launch` the signal reaches every process (a
terminal signals the whole process group, and the launcher passes SIGTERM on), each
somewhere else in its step, and a collective (all-reduce, barrier) left half-done would hang
them all until the launcher kills them. So there each process only notes the request, all
agree on it after every step, and they save that same step together. A second Ctrl-C stops
at once.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any, Iterator


class StopRequest:
    def __init__(self, processes: int = 1):
        self.deferred = processes > 1  # note the signal; the trainer stops after the step
        self.requested = False

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self.deferred and not (self.requested and signum == signal.SIGINT):
            self.requested = True
            return
        raise KeyboardInterrupt

    @contextlib.contextmanager
    def handlers(self) -> Iterator["StopRequest"]:
        """Route SIGINT and SIGTERM (cluster pre-emption, `kill`) here while training."""
        if threading.current_thread() is not threading.main_thread():
            yield self  # signal handlers can only be set from the main thread
            return
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
