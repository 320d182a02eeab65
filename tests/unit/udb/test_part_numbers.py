"""Part numbers handed out by a worker's import gateway (ess.udb.gateway.PartNumbers)."""

from __future__ import annotations

import threading

from ess.udb.commit import Stager
from ess.udb.gateway import PartNumbers


def test_parts_are_numbered_in_order_of_asking_apart_from_the_schedulers() -> None:
    """Unique within an attempt and in the order its parts first import, whatever other
    attempts ask in between (one counter: no table of attempts to prune)."""
    numbers = PartNumbers()
    got = [numbers(), numbers(), numbers(), numbers()]
    assert got == sorted(got) and len(set(got)) == 4
    assert min(got) >= PartNumbers.LOCAL_BASE  # the scheduler's numbers start at 0
    for _ in range(10_000):  # many attempts later, an old attempt's next part is still new
        numbers()
    assert numbers() > got[2]


def test_concurrent_parts_get_distinct_numbers() -> None:
    numbers = PartNumbers()
    got: list[int] = []
    lock = threading.Lock()

    def take() -> None:
        for _ in range(200):
            n = numbers()
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
