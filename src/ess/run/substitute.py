"""The ``%`` substitutions of stream and exec, done so that no file name can inject commands.

Essentia inserts the values raw (spec 2.14.3), and so do we whenever that is safe: for
``%cols``, ``%delim`` and the node/thread numbers (values the user or ess chose), and for file
names made only of ordinary characters (letters, digits, ``_ @ % + = : , . / -``), which covers
every real-world log name and keeps ``--debug`` lines byte-identical to Essentia's.

A file name with any other character (space, quote, ``;``, ``$``, ...) is *quoted for the shell
context where the token stands*: outside quotes it becomes a single-quoted word, inside single
quotes its ``'`` are closed/escaped/reopened, inside double quotes ``\\ " $ ` `` are
backslash-escaped. The tracker knows plain sh quoting; if the command uses constructs whose
quoting it does not model (``$(``, backquotes, ``$'``, here-documents) an unsafe name is refused
with an error that points to the ``$ESS_FILE`` environment variable, which is always set and
always safe to use as ``"$ESS_FILE"``.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping

from ess.errors import UsageError

#: Longest first, so ``%num_threads`` is not read as ``%num_nodes``... and ``%delim`` never
#: eats ``%d``. Case-sensitive: ``%file`` and ``%FILE`` differ.
TOKENS = (
    "num_threads",
    "num_nodes",
    "thread_id",
    "node_id",
    "delim",
    "cols",
    "file",
    "FILE",
    "path",
)
_TOKEN_RE = re.compile("%(" + "|".join(TOKENS) + ")")
FILE_TOKENS = frozenset({"file", "FILE", "path"})
_SAFE_RE = re.compile(r"[A-Za-z0-9_@%+=:,./-]*")
_UNMODELLED = ("$(", "`", "$'", "<<")


def is_safe_word(value: str) -> bool:
    return _SAFE_RE.fullmatch(value) is not None


def _quote_states(template: str) -> list[str]:
    """The sh quoting context ("plain", "single", "double") at every index of ``template``."""
    states = []
    state = "plain"
    escaped = False
    for ch in template:
        states.append(state)
        if escaped:
            escaped = False
        elif state == "single":
            if ch == "'":
                state = "plain"
        elif ch == "\\":
            escaped = True
        elif state == "double":
            if ch == '"':
                state = "plain"
        elif ch == "'":
            state = "single"
        elif ch == '"':
            state = "double"
    return states


def _quote_for(state: str, value: str) -> str:
    if state == "single":
        return value.replace("'", "'\\''")
    if state == "double":
        return re.sub(r'([\\"$`])', r"\\\1", value)
    return shlex.quote(value)


def substitute(template: str, values: Mapping[str, str]) -> str:
    """Replace the tokens of ``template`` that have a value; other ``%`` text is left alone."""
    states: list[str] | None = None
    out: list[str] = []
    pos = 0
    for m in _TOKEN_RE.finditer(template):
        name = m.group(1)
        if name not in values:
            continue
        value = values[name]
        if name in FILE_TOKENS and not is_safe_word(value):
            if any(u in template for u in _UNMODELLED):
                raise UsageError(
                    f"file name {value!r} contains shell metacharacters and the command uses "
                    "$(...), backquotes, $'...' or a here-document, where ess cannot quote "
                    "%" + name + ' safely; use "$ESS_FILE" (or $ESS_FILE_STEM, $ESS_FILE_DIR) '
                    "in the command instead"
                )
            if states is None:
                states = _quote_states(template)
            value = _quote_for(states[m.start()], value)
        out.append(template[pos : m.start()])
        out.append(value)
        pos = m.end()
    out.append(template[pos:])
    return "".join(out)


def single_quote(value: str) -> str:
    """Always single-quoted (the ``localget -f  '<path>'`` form of ``--debug`` lines)."""
    return "'" + value.replace("'", "'\\''") + "'"
