"""A graceful stop for one-shot commands (`sync`, `backfill`, and any later one) on SIGINT/SIGTERM.

The first signal sets `event`: passes commit the batch in hand and end as interrupted, waits for
the rate budget or a retry end at once (nothing was sent), and the command exits 128 + the
signal's number (130 for SIGINT, 143 for SIGTERM). A second signal cancels the work at once:
the batch in flight rolls back, and each pass still records its run as interrupted.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable
from typing import Any, TypeVar

import structlog

from syncer.errors import Interrupted

log = structlog.get_logger(__name__)

T = TypeVar("T")

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class GracefulStop:
    """`await GracefulStop().run(work)`; pass `event` to the passes and `sleep` to the client."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.signal: signal.Signals | None = None  #: the first signal received
        self.forced = False  #: a second signal cancelled the work
        self._work: asyncio.Future[Any] | None = None

    def __repr__(self) -> str:
        return f"GracefulStop(signal={self.signal}, forced={self.forced})"

    @property
    def exit_code(self) -> int:
        """128 + the signal's number, the shell's convention (0 when no signal came)."""
        return 128 + int(self.signal) if self.signal is not None else 0

    async def run(self, work: Awaitable[T]) -> T | None:
        """Await `work` with SIGINT and SIGTERM handled; None if a second signal cancelled it."""
        loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(work)
        self._work = task
        for sig in SIGNALS:
            loop.add_signal_handler(sig, self._received, sig)
        try:
            return await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if self.forced and task.cancelled() and not (current and current.cancelling()):
                return None  # our own cancellation of the work, not this task's
            raise
        finally:
            for sig in SIGNALS:
                loop.remove_signal_handler(sig)

    async def sleep(self, seconds: float) -> None:
        """A pause before a retry, ended at once by a stop (nothing was sent yet)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.event.wait(), seconds)
        if self.event.is_set():
            raise Interrupted("stopping: the retry was not sent")

    def _received(self, sig: signal.Signals) -> None:
        if self.signal is None:
            self.signal = sig
            log.info("stopping", signal=sig.name, hint="a second signal stops at once")
            self.event.set()
        elif not self.forced and self._work is not None:
            self.forced = True
            log.warning("stopping_now", signal=sig.name)
            self._work.cancel()
