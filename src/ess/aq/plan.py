"""What aq_pp's compiler hands to the runner: a frozen Plan of steps over Polars frames.

Compile time (ess.aq.pp, ess.aq.builder) and run time (ess.aq.runner) meet only here: the runner
reads nothing but the Plan, and the steps read nothing of the compiler — what they need was
fixed when they were built; what changes from batch to batch lives in RunState.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import polars as pl

from ess.aq.rules import Output, Program
from ess.aq.writer import OutCol, Sink

ROWNUM = "__rownum"


@dataclass
class Col:
    """A column of aq_pp's namespace as the compiler sees it at one point of the chain."""

    name: str  # internal column name
    label: str
    typ: str
    is_var: bool = False


@dataclass
class RunState:
    """What a run changes from batch to batch: variable values, open outputs, counters."""

    carries: dict[str, object] = field(default_factory=dict)
    sinks: dict[str, Sink] = field(default_factory=dict)
    random_state: int = 1
    records: int = 0
    errors: int = 0
    out_rows: int = 0


Step = Callable[[pl.DataFrame, RunState], pl.DataFrame]


@dataclass(frozen=True)
class Plan:
    """A compiled aq_pp command: everything the runner needs, nothing it may change."""

    prog: Program
    steps: tuple[Step, ...]
    labels: tuple[str, ...]  # the rule each step comes from, as the user wrote it
    outputs: tuple[tuple[Output, tuple[OutCol, ...]], ...]  # -o/-c: title written at start
    ovars: tuple[tuple[Output, tuple[OutCol, ...]], ...]  # -ovar: written after the last batch
    input_cols: tuple[Col, ...]  # the columns the input specs define, in order
    used: frozenset[str]  # columns some rule or output reads (the others are not parsed)
    vars_init: Mapping[str, object]
    uses_rownum: bool  # $RowNum: the row-number column is only built when read
    uses_random: bool
