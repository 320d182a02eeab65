"""Import sinks: where `aq_pp -imp Target` sends rows, registered by the layer that owns them.

aq sits below the UDB, so it cannot name it. A sink registers a factory under a scheme
(`register_sink("udb", factory)`, done by ess.udb.imp when it is imported); aq_pp's compiler
asks the registry for the step of an `-imp` rule. The command-line entry point imports the
owners of the sinks a command uses, so nothing is loaded for commands without `-imp`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import polars as pl

from ess.errors import NotSupportedError

ImportStep = Callable[[pl.DataFrame, Any], pl.DataFrame]


class SinkFactory(Protocol):
    def __call__(
        self,
        target: str,
        attrs: list[str],
        columns: dict[str, str],
        *,
        ddef: bool,
        mask: str | None,
    ) -> ImportStep:
        """A step `(batch, state) -> batch` sending the batch's rows to `target`.

        `columns` maps each visible (lower-case) row name to the frame column that holds it;
        `mask` names a boolean column selecting the rows (inside `-if` branches)."""
        ...


@dataclass(frozen=True)
class SinkEntry:
    factory: SinkFactory
    close: Callable[[], None] | None = None  # release connections once the run is over


_SINKS: dict[str, SinkEntry] = {}

#: the scheme of `-imp Db:Tab` (the only import target aq_pp has)
UDB = "udb"


def register_sink(
    scheme: str, factory: SinkFactory, *, close: Callable[[], None] | None = None
) -> None:
    _SINKS[scheme] = SinkEntry(factory, close)


def import_step(
    scheme: str,
    target: str,
    attrs: list[str],
    columns: dict[str, str],
    *,
    ddef: bool,
    mask: str | None,
) -> ImportStep:
    sink = _SINKS.get(scheme)
    if sink is None:
        raise NotSupportedError(f"aq_pp -imp {target}: no {scheme} import sink in this process")
    return sink.factory(target, attrs, columns, ddef=ddef, mask=mask)


def close_sinks() -> None:
    """Close what the registered sinks opened (their connections, hand-over directories)."""
    for sink in list(_SINKS.values()):
        if sink.close is not None:
            sink.close()
