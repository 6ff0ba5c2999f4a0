"""The follower reads off the event loop's thread, reports failures, recovers, never stops."""

from __future__ import annotations

import asyncio
import threading

from tradelib.errors import StoreError
from widgets.follow import Follower, run_detached


async def _until(condition: object, what: str) -> None:
    for _ in range(2000):  # a safety net of ~20 s, not a timing assertion
        if callable(condition) and condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"gave up waiting for {what}")


async def test_reads_run_on_a_worker_thread_and_updates_on_the_loop() -> None:
    loop_thread = threading.get_ident()
    readers: list[int] = []
    applied: list[tuple[int, int]] = []

    def read() -> int:
        readers.append(threading.get_ident())
        return len(readers)

    follower: Follower[int] = Follower(
        read, lambda n: applied.append((n, threading.get_ident())), lambda e: None, 0.01
    )
    follower.start()
    await _until(lambda: len(applied) >= 3, "three refreshes")
    follower.stop()
    assert loop_thread not in readers  # the kernel's thread never waits for the store
    assert {thread for _, thread in applied} == {loop_thread}  # widgets change on the loop


async def test_a_store_that_fails_is_reported_and_the_first_good_read_recovers() -> None:
    outcomes: list[str] = []
    answers: list[object] = [StoreError("down"), StoreError("still down"), 42, 43]

    def read() -> int:
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(answer, Exception):
            raise answer
        assert isinstance(answer, int)
        return answer

    follower: Follower[int] = Follower(
        read, lambda n: outcomes.append(f"ok {n}"), lambda e: outcomes.append(f"fail {e}"),
        interval=0.01, max_backoff=0.05,
    )  # fmt: skip
    follower.start()
    await _until(lambda: "ok 43" in outcomes, "recovery")
    follower.stop()
    assert outcomes[:3] == ["fail down", "fail still down", "ok 42"]
    assert follower.failures == 0


async def test_a_drawing_error_does_not_stop_the_refreshes() -> None:
    calls: list[int] = []

    def apply(n: int) -> None:
        calls.append(n)
        if len(calls) == 1:
            raise ValueError("bug in a view")

    count = iter(range(1_000_000))
    follower: Follower[int] = Follower(lambda: next(count), apply, lambda e: None, 0.01)
    follower.start()
    await _until(lambda: len(calls) >= 3, "refreshes after the error")
    follower.stop()


async def test_poke_refreshes_at_once_and_submit_answers_on_the_loop() -> None:
    reads: list[int] = []
    follower: Follower[int] = Follower(
        lambda: reads.append(1) or len(reads), lambda n: None, lambda e: None, interval=3600
    )
    follower.start()
    await _until(lambda: len(reads) == 1, "the first read")
    follower.poke()
    await _until(lambda: len(reads) == 2, "a read on demand, long before the hour")
    answers: list[tuple[object, object]] = []
    follower.submit(lambda: 7, lambda result, error: answers.append((result, error)))
    follower.submit(lambda: 1 / 0, lambda result, error: answers.append((result, error)))
    await _until(lambda: len(answers) == 2, "both answers")
    follower.stop()
    assert answers[0] == (7, None)
    assert answers[1][0] is None and isinstance(answers[1][1], ZeroDivisionError)


async def test_the_emergency_stop_runs_beside_a_read_that_hangs() -> None:
    gate = threading.Event()
    follower: Follower[int] = Follower(
        lambda: gate.wait() and 1, lambda n: None, lambda e: None, interval=0.01
    )
    follower.start()
    done: list[object] = []
    run_detached(lambda: "stopped", lambda result, error: done.append(result))
    await _until(lambda: done == ["stopped"], "the stop, while the read is stuck")
    gate.set()
    follower.stop()


def test_without_an_event_loop_the_follower_runs_its_own() -> None:
    applied = threading.Event()
    follower: Follower[int] = Follower(lambda: 1, lambda n: applied.set(), lambda e: None, 0.01)
    follower.start()
    assert applied.wait(20)
    follower.stop()


async def test_a_read_that_hangs_is_reported_while_it_lasts() -> None:
    release = threading.Event()
    outcomes: list[str] = []

    def read() -> int:
        release.wait()
        return 1

    follower: Follower[int] = Follower(
        read, lambda n: outcomes.append("ok"), lambda e: outcomes.append(str(e)),
        interval=0.01, read_timeout=0.05,
    )  # fmt: skip
    follower.start()
    await _until(lambda: len(outcomes) >= 2, "two reports of the silence")
    assert "the store has not answered" in outcomes[0]
    release.set()
    await _until(lambda: "ok" in outcomes, "the answer")
    follower.stop()
    assert all("answered" in o for o in outcomes[: outcomes.index("ok")])
