"""Stopping a sweep: Ctrl-C, SIGTERM and SIGHUP end ``kdbench`` promptly and cleanly.

The first of these signals raises :class:`Interrupted` (a ``KeyboardInterrupt``) in the
driver, which kills its workers (:class:`kdbench.executors.Processes`), ends the sweep's
MLflow run KILLED and exits ``128 + signal`` (130, 143, 129: the shell's convention). A
signal that lands while a result is being written to the store waits for that write
(:func:`deferred`), so a run is either logged whole or not at all. A second Ctrl-C exits at
once, killing the workers first.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import shlex
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(KeyboardInterrupt):
    """The driver was asked to stop by signal ``signum``."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class _State:
    """What the handlers share: the signal received and whether a write is under way."""

    def __init__(self) -> None:
        self.received: int | None = None
        self.pending: int | None = None
        self.writing = 0


_state = _State()


def _handle(signum: int, frame: FrameType | None) -> None:
    if _state.received is not None:
        if signum == signal.SIGINT:
            _exit_now(signum)
        return  # a SIGTERM or SIGHUP after the first signal: already stopping
    _state.received = signum
    if _state.writing:
        _state.pending = signum
        return
    raise Interrupted(signum)


def _exit_now(signum: int) -> None:
    children = mp.active_children()
    for child in children:
        with contextlib.suppress(OSError):
            child.kill()
    # Reap them: an orphaned zombie is adopted by PID 1, which in a container may never wait.
    for child in children:
        with contextlib.suppress(OSError, AssertionError):
            child.join(timeout=2)
    os.write(2, b"kdbench: interrupted twice: stopped at once; runs being written may be left "
                b"RUNNING (the next kdbench run marks them KILLED)\n")
    os._exit(128 + signum)


@contextlib.contextmanager
def handled() -> Iterator[None]:
    """Turn SIGINT, SIGTERM and SIGHUP into :class:`Interrupted` while the block runs (in the
    main thread only: Python delivers signals there)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in SIGNALS}
    _state.received = _state.pending = None
    for s in SIGNALS:
        signal.signal(s, _handle)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold a stop signal until the block (a write to the store) is done, then raise it."""
    _state.writing += 1
    try:
        yield
    finally:
        _state.writing -= 1
    if not _state.writing and _state.pending is not None:
        signum, _state.pending = _state.pending, None
        raise Interrupted(signum)


def stopping() -> bool:
    """Whether a stop signal was received (the driver is winding down)."""
    return _state.received is not None


def report(stop: KeyboardInterrupt) -> int:
    """Say on stderr, in one line, what was kept and how to resume; the exit code."""
    signum = stop.signum if isinstance(stop, Interrupted) else signal.SIGINT
    command = shlex.join(["kdbench", *sys.argv[1:]])
    print(f"kdbench: interrupted ({signal.Signals(signum).name}): finished runs are saved; "
          f"resume with: {command}", file=sys.stderr)
    return 128 + signum
