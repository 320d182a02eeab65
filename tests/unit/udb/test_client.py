"""The client's handling of one operation's tasks on several workers, without a cluster: a
failure is reported only once every task of the operation has ended (a refused import must not
leave another worker's part of the batch still being applied behind the caller's back)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from typing import Any

import polars as pl
import pytest

from ess.errors import UdbError
from ess.udb import client
from ess.udb.client import UdbSession
from ess.udb.spec import parse_spec

SPEC = parse_spec("@PKey:\n s:k\n@Vector:v\n i,+add:n\n", name="db", source="test")
REFUSED = "worker worker-1: out of memory for this import: import refused"


def later(seconds: float, result: Any, done: list[str], name: str) -> Future[Any]:
    """A task that ends after `seconds` (recording its end in `done`)."""
    fut: Future[Any] = Future()

    def finish() -> None:
        time.sleep(seconds)
        done.append(name)
        fut.set_result(result)

    threading.Thread(target=finish, daemon=True).start()
    return fut


def failed(exc: Exception) -> Future[Any]:
    fut: Future[Any] = Future()
    fut.set_exception(exc)
    return fut


class FakeScheduler:
    stamp = 1_000

    def run_on_scheduler(self, func: Any, *, count: int) -> int:
        base, self.stamp = self.stamp, self.stamp + count
        return base


class Passthrough:
    """No shared memory: batches travel as they are."""

    def pack(self, address: str, parts: dict[int, Any]) -> dict[int, Any]:
        return parts

    def done(self) -> None:
        pass


def session(run: Any) -> UdbSession:
    """A session whose tasks are `run(worker name)`; worker-1 and worker-2, always running."""
    s = object.__new__(UdbSession)
    s.workers = ("worker-1", "worker-2")
    s.place = client.placement(s.workers)
    s.client = FakeScheduler()  # type: ignore[assignment]
    s.shipper = Passthrough()  # type: ignore[assignment]
    s.addresses = lambda: {name: name for name in s.workers}  # type: ignore[method-assign]
    s.check_placement = lambda: None  # type: ignore[method-assign]
    s._run = lambda address, func, *args: run(address)  # type: ignore[method-assign]
    return s


def test_gather_raises_only_after_every_task_ended() -> None:
    done: list[str] = []
    s = session(lambda name: None)
    with pytest.raises(UdbError, match="import refused"):
        s.gather([failed(UdbError(REFUSED)), later(0.3, 1, done, "worker-2")])
    assert done == ["worker-2"]


def test_gather_prefers_a_refusal_to_a_failure_it_caused() -> None:
    s = session(lambda name: None)
    with pytest.raises(UdbError, match="import refused"):
        s.gather([failed(RuntimeError("connection lost")), failed(UdbError(REFUSED))])
    with pytest.raises(UdbError, match="a UDB task failed on a worker: connection lost"):
        s.gather([failed(RuntimeError("connection lost"))])
    assert s.gather([later(0, 1, [], "a"), later(0.05, 2, [], "b")]) == [1, 2]


def test_import_refused_on_one_worker_returns_after_the_others_applied() -> None:
    """The flake of test_memory_exhaustion_refuses_import_and_keeps_data: one worker refused
    at once, the client raised and the test restored the memory margin while another worker
    had not yet taken its task, which then applied its part of the batch. The refusal now
    comes once every task of the batch has ended."""
    done: list[str] = []
    refused: list[str] = []

    def run(name: str) -> Future[Any]:
        if not refused:  # the first worker shipped to refuses (its task is waited for first)
            refused.append(name)
            return failed(UdbError(REFUSED))
        return later(0.3, 1, done, name)

    s = session(run)
    keys = pl.DataFrame({"k": [f"k{i}" for i in range(200)], "n": list(range(200))})
    assert {s.place[p] for p in client.hashing.partition_of(keys, ["k"], 32).unique()} == {
        "worker-1",
        "worker-2",
    }  # the batch has a part on each worker
    with pytest.raises(UdbError, match="import refused"):
        s.import_frames(SPEC, "v", [keys])
    assert done == [name for name in s.workers if name not in refused]


def test_import_stopped_by_a_failed_step_waits_for_the_batch_shipped() -> None:
    """A failure between batches (here: the second batch's workers cannot be named) is
    reported once the first batch has been applied everywhere."""
    done: list[str] = []
    calls = {"n": 0}

    def addresses() -> dict[str, str]:
        calls["n"] += 1
        if calls["n"] > 1:
            raise UdbError("cannot reach the scheduler")
        return {"worker-1": "worker-1", "worker-2": "worker-2"}

    s = session(lambda name: later(0.3, 1, done, name))
    s.addresses = addresses  # type: ignore[method-assign]
    keys = pl.DataFrame({"k": [f"k{i}" for i in range(200)], "n": list(range(200))})
    with pytest.raises(UdbError, match="cannot reach"):
        s.import_frames(SPEC, "v", [keys, keys, keys])
    assert sorted(done) == ["worker-1", "worker-2"]
