"""The gateway's bookkeeping of direct staging (ess.udb.direct.Router)."""

from __future__ import annotations

from ess.udb.commit import Stager
from ess.udb.direct import Router


class View:
    """What Router.staged/before_close touch of a gateway session view: its stager."""

    def __init__(self) -> None:
        self.stager = Stager(run="r", file=0, attempt="a", runner="", part=0)


def test_a_routed_batch_never_reported_makes_the_part_incomplete() -> None:
    view = View()
    router = Router(lambda v: None)
    router.pending.update({0, 1})
    router.staged(view, {"seq": 0, "workers": ["w1", "w2"]})
    router.before_close(view)
    assert view.stager.failed
    assert view.stager.manifest()["complete"] is False
    assert view.stager.sent == {"w1": [0], "w2": [0]}


def test_every_batch_reported_keeps_the_part_complete() -> None:
    view = View()
    router = Router(lambda v: None)
    router.pending.add(0)
    router.staged(view, {"seq": 0, "workers": ["w2"]})
    router.before_close(view)
    assert not view.stager.failed and view.stager.manifest()["complete"] is True
