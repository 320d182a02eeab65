"""Running a compiled aq_pp Plan: batches in, steps, outputs; the reader runs ahead.

The runner reads only the Plan (ess.aq.plan); it knows nothing of the compiler."""

from __future__ import annotations

import functools
import os
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TextIO, TypeVar

import polars as pl

from ess.aq import batches, failures, reader
from ess.aq.colspec import ColSpec, polars_dtype
from ess.aq.plan import ROWNUM, Col, Plan, RunState
from ess.aq.rules import InputAttrs, Program, Sep
from ess.aq.values import default_value
from ess.aq.writer import Sink, title_line, write_rows
from ess.errors import AqDataError

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class Job:
    """A compiled aq_pp command ready to run."""

    plan: Plan

    @property
    def prog(self) -> Program:
        return self.plan.prog

    def run(self, *, stderr: TextIO | None = None) -> int:
        with failures.quiet_polars():
            return self._run(stderr or sys.stderr)

    def _run(self, err: TextIO) -> int:
        st = RunState(random_state=self.prog.seed)
        st.carries.update(self.plan.vars_init)
        for rule, cols in self.plan.outputs:
            sink = st.sinks.setdefault(rule.path, Sink(rule.path, rule.attrs.app))
            if not rule.attrs.notitle:
                sink.write(title_line(cols, rule.attrs))
        for rule in self.prog.ovars:
            st.sinks.setdefault(rule.path, Sink(rule.path, rule.attrs.app))
        try:
            frames = self.batches(st, err)
            if os.environ.get("ESS_AQ_PREFETCH", "1") != "0":  # knob for measuring the thread
                frames = prefetch(frames)
            self.run_steps(frames, st)
            self.write_ovars(st)
        finally:
            for sink in st.sinks.values():
                sink.close()
        if self.prog.stat:
            err.write(f"aq_pp: rec={st.records} err={st.errors} out={st.out_rows}\n")
        return 0

    def run_steps(self, frames: Iterator[tuple[pl.DataFrame, str]], st: RunState) -> None:
        """Every batch through every step: the run-time mapping points of Polars errors (a
        try costs nothing unless raised, Python 3.11)."""
        steps = tuple(zip(self.plan.steps, self.plan.labels, strict=True))
        try:
            for frame, lines in frames:
                for step, label in steps:
                    try:
                        frame = step(frame, st)
                    except failures.VALUE_ERRORS as exc:
                        where = f"{lines}: {label}" if label else lines
                        raise AqDataError(f"{where}: {failures.message(exc)}") from None
        except failures.VALUE_ERRORS as exc:  # from the readers: input they cannot handle
            raise AqDataError(f"input error: reading failed: {failures.message(exc)}") from None

    def write_ovars(self, st: RunState) -> None:
        for rule, cols in self.plan.ovars:
            row = pl.DataFrame(
                {c.name: pl.Series([st.carries[c.name]], dtype=polars_dtype(c.typ)) for c in cols}
            )
            sink = st.sinks[rule.path]
            if not rule.attrs.notitle:
                sink.write(title_line(cols, rule.attrs))
            write_rows(row, cols, rule.attrs, sink)

    def batches(self, st: RunState, err: TextIO) -> Iterator[tuple[pl.DataFrame, str]]:
        """The typed batches of every input, each with the lines it comes from."""
        used = self.plan.used
        # string fields nobody reads are not even parsed; numeric ones are still converted,
        # because a value that does not convert drops the row (or stops the run) whether used
        # or not, but they need not be kept (the C parser only validates them)
        union = [c for c in self.plan.input_cols if c.name in used]
        check_only = frozenset(
            c.name for c in self.plan.input_cols if c.name not in used and c.typ not in ("S", "IP")
        )
        for spec in [self.prog.main, *self.prog.cats]:
            items = [
                ColSpec("X", "") if isinstance(it, ColSpec) and not it.skip
                and it.typ in ("S", "IP") and it.name.lower() not in used else it
                for it in spec.columns
            ]  # fmt: skip
            names = [it.name.lower() if not it.skip else "" for it in items
                     if isinstance(it, ColSpec)]  # fmt: skip
            for path in spec.files:
                dropped, first = 0, ""
                chunks = batches.read_chunks(path, spec.attrs)
                parse = functools.partial(typed_chunk, spec.attrs, items, names, check_only)
                for typed, bad_rows, bad_first, lines in ordered_map(parse, chunks, PARSERS):
                    dropped += bad_rows
                    first = first or bad_first
                    limit = spec.attrs.eok_limit
                    if limit is not None and dropped > limit:
                        src = batches.source_name(path)
                        raise AqDataError(f"{src}: more than {limit} input errors (eok={limit})")
                    yield self.finish_frame(typed, union, st), lines
                if dropped:
                    st.errors += dropped
                    if not spec.attrs.qui:
                        src = batches.source_name(path)
                        at = first.removeprefix(f"{src}, ")
                        err.write(f"aq_pp: {src}: {dropped} record(s) skipped (input errors), "
                                  f"the first at {at}\n")  # fmt: skip

    def finish_frame(self, typed: pl.DataFrame, union: list[Col], st: RunState) -> pl.DataFrame:
        exprs = [
            pl.col(c.name) if c.name in typed.columns else default_value(c.typ).alias(c.name)
            for c in union
        ]
        start = self.prog.rownum_start + st.records
        st.records += typed.height
        frame = typed.select(exprs) if exprs else reader.row_carrier(typed.height)
        if self.plan.uses_rownum:
            rownum = pl.int_range(start, start + typed.height, dtype=pl.Int64)
            frame = frame.with_columns(rownum.alias(ROWNUM))
        if self.plan.uses_random:
            frame = frame.with_columns(st_random(st, frame.height))
        return frame


PARSERS = 2  # chunks parsed at once: Polars parses one in-memory chunk on one core


def typed_chunk(
    attrs: InputAttrs, items: list[ColSpec | Sep], names: list[str], check_only: frozenset[str],
    chunk: batches.Chunk,
) -> tuple[pl.DataFrame, int, str, str]:  # fmt: skip
    """The typed rows of one chunk, how many bad rows `eok` dropped, the first one's
    description and the chunk's lines (no shared state).

    Three parsers, cheapest first: the C parser for clean chunks, Polars' typed CSV reader,
    then strings + field rules (conversion errors, `eok`)."""
    lines = batch_lines(chunk)
    fast = reader.native_typed(chunk, attrs, items, names, check_only)
    if fast is not None:
        return fast, 0, "", lines
    fast = reader.fast_typed(chunk, attrs, items, names)
    if fast is not None:
        return fast, 0, "", lines
    try:
        raw = reader.parse_chunk(chunk, attrs, items)
        typed, bad = reader.typed_frame(raw, items, names)
    except failures.VALUE_ERRORS as exc:  # the parser's own limits (e.g. a huge record)
        raise AqDataError(f"input error: {lines}: {failures.message(exc)}") from None
    if not bad.any():
        return typed, 0, "", lines
    msg = reader.describe_error(raw, typed, items, names, bad.arg_true()[0], chunk)
    if not attrs.eok:
        raise AqDataError(f"input error: {msg} (add eok to -f to skip)")
    return typed.filter(~bad), int(bad.sum()), msg, lines


def batch_lines(chunk: batches.Chunk) -> str:
    """Where a chunk's records come from, for a run-time error (no extra pass over it)."""
    if chunk.newlines < 0:  # not counted by the reader: not worth a pass for a rare error
        return f"{chunk.source}, the batch from line {chunk.first_line}"
    last = chunk.first_line + max(chunk.newlines - 1, 0)
    return f"{chunk.source}, lines {chunk.first_line}-{last}"


def ordered_map(fn: Callable[[T], R], items: Iterable[T], width: int) -> Iterator[R]:
    """`map(fn, items)` with up to `width` calls running in threads, results in input order.

    An exception surfaces when its item's turn comes, after every earlier result, as in a
    sequential loop; items read ahead are simply abandoned.
    """
    if width <= 1:
        yield from map(fn, items)
        return
    pool = ThreadPoolExecutor(width, thread_name_prefix="aq_pp-parse")
    pending: deque[Future[R]] = deque()
    try:
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= width:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()
        pool.shutdown(wait=False)


def prefetch(frames: Iterator[T], depth: int = 1) -> Iterator[T]:
    """Read and parse the next batch in a thread while this one is processed and written.

    Polars releases the GIL while parsing, so on two cores reading overlaps with formatting.
    At most `depth` parsed batches wait in the queue, which keeps memory bounded.
    """
    import queue
    import threading

    box: queue.Queue[tuple[str, object]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for frame in frames:
                if stop.is_set():
                    return
                box.put(("frame", frame))
            box.put(("end", None))
        except BaseException as exc:
            box.put(("error", exc))

    worker = threading.Thread(target=produce, name="aq_pp-reader", daemon=True)
    worker.start()
    interrupted = False
    try:
        while True:
            kind, item = box.get()
            if kind == "end":
                return
            if kind == "error":
                raise item  # type: ignore[misc]
            yield item  # type: ignore[misc]
    except KeyboardInterrupt:
        # Ctrl-C: the producer may be blocked reading a terminal or a pipe that never ends;
        # waiting for it would hang the interrupt. It is a daemon and ends with the process.
        interrupted = True
        raise
    finally:
        stop.set()
        while worker.is_alive() and not interrupted:  # unblock a producer on a full queue
            try:
                box.get_nowait()
            except queue.Empty:
                worker.join(0.05)


def st_random(st: RunState, height: int) -> pl.Expr:
    """Positive pseudo-random integers seeded by -seed (Essentia's generator is unknown)."""
    start = st.records - height
    seed = st.random_state
    rows = pl.int_range(start, start + height, dtype=pl.UInt64)
    return ((rows.hash(seed) // 2**33) + 1).cast(pl.Int64).alias("__random")
