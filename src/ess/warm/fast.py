"""The warm launcher started without site-packages processing (``python -S``).

A command's ``aq_pp`` is found first in a directory the warm service fills (its socket's name
+ ``.bin``, put first on the PATH of the commands its worker or stream runs: see
:mod:`ess.warm.fastbin`). Those scripts run the interpreter with ``-S``: no ``site`` module, no
``.pth`` files, about 4 ms of CPU less per command than the pip-made entry point, whose
launcher then does exactly the same thing. Standard library only (there is no site-packages
on the path here). When the command must run cold, the real entry point is exec'ed: the same
process, now with the full interpreter set-up.
"""

from __future__ import annotations

import os
import sys


def run(tool: str, script: str) -> None:
    sys.argv[0] = script  # what the real entry point would have seen
    from ess.warm.launcher import handoff

    handoff(tool)  # returns only when the command should run cold
    try:
        os.execv(script, [script, *sys.argv[1:]])
    except OSError as exc:
        os.write(2, f"{tool}: cannot run {script}: {exc.strerror}\n".encode())
        os._exit(127)
