"""The `aq_pp` entry point: parse argv, run the library, turn EssError into message + exit code."""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing costs ~8 ms of start-up, which the warm launcher saves
if TYPE_CHECKING:
    from typing import NoReturn

USAGE = """\
usage: aq_pp [-h] [-f[,AtrLst] File ...] -d ColSpec ... [rules ...] [outputs ...]

Record preprocessor (AuriQ Essentia compatible). Reads delimited records, applies the rules
in command-line order (a row flows through them in that order) and writes Essentia CSV.

input:
  -f[,AtrLst] File ...       input files (- = stdin); AtrLst: +N[l|r|b] eok[=Num] qui[=Num]
                             csv sep=C noq esc nox tab fix div jsn xml base=Path
  -d ColSpec ...             input columns, Type[,Attr...]:Name (S I IS L F IP X), sep:Text
  -cat[,AtrLst] File ... ColSpec ...   more input files with their own column spec
rules:
  -eval ColSpec|Col|- Expr   compute a new or existing column (- discards the value)
  -evlc ColSpec|Col Expr     legacy spelling of -eval
  -filt Expr                 keep the rows where Expr is true
  -var ColSpec Value         a variable: carried from row to row, printed by -ovar
  -map[,Attr] Col From To    rewrite Col where it matches From (rx, rx_extended, pcre, ncas)
  -maprx Col From To         -map with regex From
  -mapf[,Attr] Col From      extract %%Names%% from Col for -mapc
  -mapfrx Col From           -mapf with regex From
  -mapc ColSpec|Col To       build a column from the extracted %%Names%%
  -sub[,Attr] Col File ... [Spec ...]   replace Col by lookup (pat ncas req; FROM TO X)
  -grep[,Attr] Col File ... [Spec ...]  keep rows whose Col is in the files (pat ncas rev)
  -cmb[,Attr] File ... ColSpec ...      join columns of a lookup file (key cmb ncas req all)
  -alias Col Name            a second name for a column
  -renam Col Name            rename a column
  -true                      a rule that always succeeds
  -false                     a rule that always fails
  -if Rule ...               run the rules up to -elif/-else/-endif where Rule succeeds
  -ifnot Rule ...            ... where Rule fails
  -elif Rule ...             the next branch of an -if: where Rule succeeds
  -elifnot Rule ...          ... where Rule fails
  -else ...                  the rows no branch took
  -endif                     the end of an -if block
outputs:
  -o[,AtrLst] File           write the rows here (- = stdout); notitle app sep=C fmt_g esc noq
  -c Col[:Label] ...         the columns of the preceding -o (~Col/!Col drop, * all)
  -notitle                   legacy: no title line for the preceding -o
  -ovar[,AtrLst] File        write the final values of the -var variables
  -imp[,AtrLst] Db[:Tab]     import the rows into the UDB (spec= db= ddef nodelay)
  -udb [-spec File] [-db Db] legacy prefix of -imp (its -spec/-db become -imp attributes)
  -ddef                      -imp: columns missing in the data get their default
settings:
  -seed N                    seed of $Random
  -rownum N                  first $RowNum (legacy)
  -stat                      print record, error and output counts on stderr
  -test                      check the command line, process nothing
  -verb                      accepted (no effect)
  -local                     accepted (no effect: the UDB is always the cluster's)
  -nobnk                     accepted (no effect)
  -nonew                     accepted (no effect)
  -spec File                 accepted, ignored outside -udb
  -db Db                     accepted, ignored outside -udb
  -seg N                     accepted, ignored
  -bz N                      accepted, ignored (records have no size limit)
  -emod V                    accepted, ignored
  -mesg V                    accepted, ignored
  -server V                  accepted, ignored
  -mod V                     accepted, ignored
  -kenc                      not supported (exit 10)
  -kdec                      not supported (exit 10)
  -pmod                      not supported (exit 10)
  -exp                       not supported (exit 10): Udb export as input
  -cnt                       not supported (exit 10): Udb count as input
  -quit                      not supported (exit 10)
  -quitafter                 not supported (exit 10)
  -skip                      not supported (exit 10)
  -h, -help, --help          this help

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
    if argv is None:  # a command: run it in the node's warm service when one is running
        from ess.warm.launcher import handoff

        handoff("aq_pp")  # returns only when the command should run here, cold
    import gc

    from ess.errors import EssError

    # start-up allocates ~200k long-lived objects (Polars, our modules): collecting them again
    # and again costs ~60 ms. Freeze them once the program is compiled; batches are not cyclic.
    try:
        gc.disable()
        try:
            from ess.aq.interrupts import python_handles_ctrl_c
            from ess.aq.pp import compile_program, uses_imports
            from ess.aq.rules import parse_argv

            python_handles_ctrl_c()

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
    except KeyboardInterrupt:  # Ctrl-C: no traceback; a command dies of SIGINT (finish)
        if argv is not None:
            raise  # in-process callers (the warm service's child) decide themselves
        code = 130
    except Exception as exc:  # a bug: still one line, never a traceback (docs/aq_pp.md)
        sys.stdout.flush()
        sys.stderr.write(f"aq_pp: internal error: {type(exc).__name__}: {_first_line(exc)}\n")
        code = 1
    finish(code, fast=argv is None)


def _first_line(exc: BaseException) -> str:
    return next(iter(str(exc).splitlines()), "")


def finish(code: int, *, fast: bool) -> NoReturn:
    """Exit with `code`. As a command (`fast`), skip the interpreter's teardown: every output
    is already closed, and tearing down Polars, pyarrow and thread pools costs ~0.1 s, which
    `ess stream` pays once per file."""
    if fast:
        import atexit

        try:
            atexit._run_exitfuncs()  # what a normal exit runs first (e.g. leftover UDB sessions)
        except KeyboardInterrupt:  # Ctrl-C while finishing: as one during the work
            code = 130
        if code == 130:  # Ctrl-C: die of SIGINT as an uncaught one would (a shell loop stops)
            import signal

            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)
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
