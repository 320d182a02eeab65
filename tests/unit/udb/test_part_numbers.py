"""Part numbers handed out by a worker's import gateway (ess.udb.gateway.PartNumbers)."""

from __future__ import annotations

import threading

from ess.udb.commit import Stager
from ess.udb.gateway import PartNumbers


def test_parts_of_an_attempt_are_numbered_in_order_apart_from_the_schedulers() -> None:
    numbers = PartNumbers()
    base = PartNumbers.LOCAL_BASE
    assert [numbers("r", 3, "a") for _ in range(3)] == [base, base + 1, base + 2]
    assert numbers("r", 3, "b") == base  # another attempt of the same file
    assert numbers("r", 4, "a") == base  # another file
    assert numbers("q", 3, "a") == base  # another stream
    assert numbers("r", 3, "a") == base + 3


def test_concurrent_parts_get_distinct_numbers() -> None:
    numbers = PartNumbers()
    got: list[int] = []
    lock = threading.Lock()

    def take() -> None:
        for _ in range(200):
            n = numbers("r", 0, "a")
            with lock:
                got.append(n)

    threads = [threading.Thread(target=take) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == list(range(PartNumbers.LOCAL_BASE, PartNumbers.LOCAL_BASE + 800))


def test_a_stager_with_local_numbering_never_asks_the_scheduler() -> None:
    class NoScheduler:
        def run_on_scheduler(self, *args: object, **kw: object) -> int:
            raise AssertionError("asked the scheduler")

    stager = Stager(run="r", file=1, attempt="a", runner="w", numbering=PartNumbers())
    assert stager.reserve(NoScheduler(), 10) == 0
    assert stager.reserve(NoScheduler(), 5) == 10
    assert stager.part == PartNumbers.LOCAL_BASE
    assert stager.tag(0) == ("r", 1, "a", PartNumbers.LOCAL_BASE, 0)
