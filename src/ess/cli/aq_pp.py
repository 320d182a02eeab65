"""The `aq_pp` entry point: parse argv, run the library, turn EssError into message + exit code."""

from __future__ import annotations

import os
import sys
from typing import NoReturn

USAGE = """\
usage: aq_pp [-h] [-f[,AtrLst] File ...] -d ColSpec ... [-cat ...] [-var ColSpec Val]
             [-eval ColSpec|Col Expr] [-filt Filter] [-if Rule ... -elif ... -else ... -endif]
             [-map/-mapf/-mapc ...] [-sub/-grep/-cmb ...] [-o[,AtrLst] File [-c Col ...]]
             [-ovar File]

Record preprocessor (AuriQ Essentia compatible). Reads delimited records, applies the rules
in command-line order and writes Essentia CSV. See docs/aq_pp.md.

example:
  aq_pp -f,+1,eok purchases.csv -d S:date S:user I:article F:price \\
        -eval is:t 'DateToTime(date, "Y.m.d.H.M.S")' -filt 'price > 1.0' \\
        -o,notitle - -c date article price
"""


def main(argv: list[str] | None = None) -> NoReturn:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "-help", "--help"):
        sys.stdout.write(USAGE)
        sys.exit(0 if args else 2)
    import gc

    from ess.errors import EssError

    # start-up allocates ~200k long-lived objects (Polars, our modules): collecting them again
    # and again costs ~60 ms. Freeze them once the program is compiled; batches are not cyclic.
    try:
        gc.disable()
        try:
            from ess.aq.pp import compile_program, uses_imports
            from ess.aq.rules import parse_argv

            prog = parse_argv(args)
            if uses_imports(prog):  # -imp: the UDB registers its import sink (ess.aq.sinks)
                import ess.udb.imp  # noqa: F401

            job = compile_program(prog)
            gc.freeze()
        finally:  # also after a compile error (main may run inside a longer-lived process)
            gc.enable()
        if not job.prog.test:
            job.run()
        close_import_sinks()  # inside the try: a failure to close is an error with its code
        code = 0
    except EssError as exc:
        sys.stdout.flush()
        sys.stderr.write(f"aq_pp: {exc}\n")
        code = exc.exit_code
    except BrokenPipeError:
        code = 0
    finish(code, fast=argv is None)


def finish(code: int, *, fast: bool) -> NoReturn:
    """Exit with `code`. As a command (`fast`), skip the interpreter's teardown: every output
    is already closed, and tearing down Polars, pyarrow and thread pools costs ~0.1 s, which
    `ess stream` pays once per file."""
    if fast:
        import atexit

        atexit._run_exitfuncs()  # what a normal exit runs first (e.g. leftover UDB sessions)
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except BrokenPipeError:
            pass
        os._exit(code)
    sys.exit(code)


def close_import_sinks() -> None:
    """Close the connections `-imp` opened (e.g. the UDB's hand-over directories)."""
    sinks = sys.modules.get("ess.aq.sinks")
    if sinks is not None:
        sinks.close_sinks()
