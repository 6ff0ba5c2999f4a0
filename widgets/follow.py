"""Keep a view following the store without ever blocking the kernel.

Reads run on one worker thread; results are applied on the kernel's event loop (ipykernel
runs one), where ipywidgets expect their changes. Without a running loop (a plain script)
the follower runs its own loop on a daemon thread. A failing read (store down, file locked)
is reported and retried with a short back-off; a read that hangs is reported every
`read_timeout` seconds while it lasts; the first read that works again recovers.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Generic, TypeVar

from tradelib.errors import StoreError
from tradelib.logs import get_logger

log = get_logger(__name__)
T = TypeVar("T")
R = TypeVar("R")


class Follower(Generic[T]):
    """Calls `read` every `interval` seconds (or when poked) and hands the result to `apply`."""

    def __init__(
        self,
        read: Callable[[], T],
        apply: Callable[[T], None],
        fail: Callable[[BaseException], None],
        interval: float = 1.0,
        max_backoff: float = 5.0,
        read_timeout: float = 10.0,
    ) -> None:
        self._read = read
        self._apply = apply
        self._fail = fail
        self.interval = interval
        self.max_backoff = max_backoff
        self.read_timeout = read_timeout
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="tradelib-dashboard")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._thread: threading.Thread | None = None
        self._stopped = False
        self.failures = 0

    @property
    def running(self) -> bool:
        """True between `start` and `stop`."""
        return self._loop is not None and not self._stopped

    def start(self) -> None:
        """Start following: on the running loop if there is one, else on a daemon thread."""
        if self._loop is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            ready = threading.Event()

            def own_loop() -> None:
                asyncio.run(self._main(ready))

            self._thread = threading.Thread(target=own_loop, name="tradelib-follow", daemon=True)
            self._thread.start()
            ready.wait()
            return
        self._loop = loop
        self._wake = asyncio.Event()
        self._task = loop.create_task(self._follow())

    async def _main(self, ready: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        ready.set()
        await self._follow()

    def stop(self) -> None:
        """Stop following; pending work finishes on the worker thread."""
        self._stopped = True
        self.poke()
        if self._task is not None:
            self._task.cancel()
        self._pool.shutdown(wait=False)

    def poke(self) -> None:
        """Refresh now instead of at the next tick (after an action or a filter change)."""
        loop, wake = self._loop, self._wake
        if loop is None or wake is None or loop.is_closed():
            return
        try:
            in_loop = asyncio.get_running_loop() is loop
        except RuntimeError:
            in_loop = False
        if in_loop:
            wake.set()
        else:
            loop.call_soon_threadsafe(wake.set)

    def submit(
        self, work: Callable[[], R], done: Callable[[R | None, BaseException | None], None]
    ) -> None:
        """Run blocking `work` on the worker thread, then `done(result, error)` on the loop."""
        future: Future[R] = self._pool.submit(work)
        loop = self._loop

        def finished(f: Future[R]) -> None:
            error = f.exception()
            result = None if error is not None else f.result()
            if loop is not None and not loop.is_closed():
                loop.call_soon_threadsafe(done, result, error)
            else:
                done(result, error)

        future.add_done_callback(finished)

    def read_once(self) -> None:
        """Read and apply synchronously on the calling thread (tests, and the first paint)."""
        try:
            value = self._read()
        except Exception as exc:  # every failure is shown, none may stop the dashboard
            self.failures += 1
            self._fail(exc)
            return
        self.failures = 0
        self._apply(value)

    async def _follow(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._wake is not None
        while not self._stopped:
            started = loop.time()
            try:
                future = loop.run_in_executor(self._pool, self._read)
            except RuntimeError:  # the pool is shut down: we are stopping
                return
            try:
                value = await self._answer(future)
            except Exception as exc:
                self.failures += 1
                self._report(self._fail, exc)
            else:
                self.failures = 0
                self._report(self._apply, value)
            if self.failures:
                delay = min(self.interval * 2 ** min(self.failures, 8), self.max_backoff)
            else:  # a steady tick: the next read starts `interval` after this one started
                delay = max(0.0, self.interval - (loop.time() - started))
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    async def _answer(self, future: asyncio.Future[T]) -> T:
        """The read's result; while it hangs (a network that drops packets), say so."""
        waited = 0.0
        while True:
            try:
                return await asyncio.wait_for(asyncio.shield(future), self.read_timeout)
            except TimeoutError:
                waited += self.read_timeout
                self.failures += 1
                error = StoreError(f"the store has not answered for {waited:.0f} s; still waiting")
                self._report(self._fail, error)

    def _report(self, callback: Callable[[Any], None], value: Any) -> None:
        try:
            callback(value)
        except Exception as exc:  # a drawing bug must not stop the refreshes
            log.error("dashboard update failed", error=repr(exc))


def run_detached(
    work: Callable[[], R], done: Callable[[R | None, BaseException | None], None]
) -> None:
    """Run `work` on a thread of its own (never queued behind reads), then `done` on the loop.

    For the emergency stop: it must not wait for a slow read of an unreachable store.
    """
    try:
        loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        loop = None

    def body() -> None:
        result: R | None = None
        error: BaseException | None = None
        try:
            result = work()
        except Exception as exc:  # shown to the person who clicked
            error = exc
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(done, result, error)
        else:
            done(result, error)

    threading.Thread(target=body, name="tradelib-emergency-stop", daemon=True).start()
