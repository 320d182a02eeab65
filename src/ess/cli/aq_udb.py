"""The `aq_udb` entry point: query and maintain the UDB (see ess.udb.query)."""

from __future__ import annotations

import os
import sys

USAGE = """usage: aq_udb [-h] Global_Opt Mnt_Spec|Order_Spec|Export_Spec
  Mnt_Spec:    -crt Db | -alt Db | -clr Db[:Tab] | -inf Db | -probe Db
  Order_Spec:  -ord[,dec,ncas] Db[:Tab] [ColName ...]
  Export_Spec: -exp|-cnt|-scn Db[:Tab] [-var Col Val] [-pp Tab ... -endpp] [-bvar Col Val]
               [-eval Col Expr] [-filt F] [-goto Dest] [-del_row|-del_key] [-if ... -endif]
               [-sort[,dec] Col ...] [-top N] [-lim_key N] [-lim_rec N] [-key_rec N]
               [-o[,AtrLst] File] [-c Col ...]
example:
  aq_udb -exp wood:usersales -sort,dec total -top 10
"""


def main(argv: list[str] | None = None) -> None:
    from ess.errors import EssError

    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "-help", "--help"):
        sys.stdout.write(USAGE)
        sys.exit(0 if args else 2)
    if argv is None:  # a command: run it in the node's warm service when one is running
        from ess.warm.launcher import handoff

        handoff("aq_udb")  # returns only when the command should run here, cold
    from ess.udb.remote import exec_follower

    if exec_follower():  # `ess exec` runs aq_udb on its first node only (docs/udb.md)
        sys.exit(0)
    try:
        from ess.aq.interrupts import python_handles_ctrl_c
        from ess.udb.query import parse_argv, run_parts
        from ess.workspace import Workspace

        python_handles_ctrl_c()

        req = parse_argv(args)  # once: the request carries everything run_parts needs
        parts = run_parts(Workspace.from_env(), req)
        if req.out_path == "-":
            for part in parts:
                sys.stdout.buffer.write(part)
            sys.stdout.flush()
        else:
            mode = "ab" if req.out_attrs.app else "wb"
            with open(req.out_path, mode) as f:
                for part in parts:
                    f.write(part)
    except EssError as exc:
        sys.stdout.flush()
        sys.stderr.write(f"aq_udb: error: {exc}\n")
        sys.exit(exc.exit_code)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # a bug: still one line, never a traceback (docs/reliability.md)
        sys.stdout.flush()
        first = next(iter(str(exc).splitlines()), "")
        sys.stderr.write(f"aq_udb: internal error: {type(exc).__name__}: {first}\n")
        sys.exit(1)
    sys.exit(0)
