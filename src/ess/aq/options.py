"""One table-driven reader for the order-sensitive argv of aq_pp and aq_udb.

Each tool lists its options in an OptionTable: name (and legacy spellings), the fixed arguments
it takes (by what they are, for "missing ..." messages), whether a list of words follows, the
parser of its `-opt,attr,attr` attributes, and whether it may appear once only. `scan()` reads
argv left to right and yields one Occurrence per option, with its arguments taken; the tool
keeps the meaning (its rule list, -if blocks) in its own small handlers.

A word that starts with `-` and a letter is an option: an unknown one stops a word list and is
reported as `unknown option -name` (a lone `-` is stdin/stdout, `-1` a number). A fixed argument
is any word that is not a known option, so `-eval x -a` still reads the expression `-a`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ess.errors import AqSyntaxError, NotSupportedError

#: parses the attributes of `-opt,a,b` (the list, and `-opt (argument N)` for messages)
AttrParser = Callable[[list[str], str], Any]


@dataclass(frozen=True)
class OptSpec:
    name: str  # canonical spelling, lower case, with its leading `-`
    args: tuple[str, ...] = ()  # fixed arguments, by what they are: ("column", "expression")
    words: bool = False  # then every word up to the next option (files, column names ...)
    aliases: tuple[str, ...] = ()  # legacy spellings that mean the same option
    attrs: AttrParser | None = None  # None: attributes are kept as written
    once: str = ""  # a group name: at most one option of the group per command ("action")
    unsupported: str = ""  # a NotSupportedError message: the option is recognised, not run


@dataclass
class Occurrence:
    """One option as found on the command line, with what it took."""

    spec: OptSpec
    name: str  # as written, without attributes (`-evlc`)
    attrs: list[str]
    args: list[str]
    words: list[str]
    at: int  # 1-based position of the option in argv

    @property
    def key(self) -> str:
        return self.spec.name

    @property
    def where(self) -> str:
        return f"{self.name} (argument {self.at})"

    def parsed_attrs(self) -> Any:
        if self.spec.attrs is None:
            return self.attrs
        return self.spec.attrs(self.attrs, self.where)


def split_attrs(word: str) -> tuple[str, list[str]]:
    """`-f,+1,sep=,,eok` → ("-f", ["+1", "sep=,", "eok"]); `sep=,` keeps its comma."""
    parts = word.split(",")
    name, raw = parts[0], parts[1:]
    attrs: list[str] = []
    i = 0
    while i < len(raw):
        item = raw[i]
        if item.lower() == "sep=" and i + 1 < len(raw) and raw[i + 1] == "":
            attrs.append("sep=,")
            i += 2
            continue
        if item:
            attrs.append(item)
        i += 1
    return name, attrs


def looks_like_option(word: str) -> bool:
    return len(word) > 1 and word[0] == "-" and (word[1].isalpha() or word[1] in "-_")


@dataclass
class OptionTable:
    specs: Iterable[OptSpec]
    #: "missing X" says where (before which word, or at the end of the command line)
    precise_missing: bool = True
    _by_name: dict[str, OptSpec] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.specs = tuple(self.specs)
        for spec in self.specs:
            for name in (spec.name, *spec.aliases):
                self._by_name[name] = spec

    def spec(self, word: str) -> OptSpec | None:
        if not word.startswith("-"):
            return None
        return self._by_name.get(split_attrs(word)[0].lower())

    def is_option(self, word: str) -> bool:
        return word != "-" and self.spec(word) is not None

    def ends_list(self, word: str) -> bool:
        """Whether a word list (files, columns) stops before `word`."""
        return self.is_option(word) or looks_like_option(word)

    def scan(self, argv: list[str]) -> Iterator[Occurrence]:
        """The options of argv in order; raises on unknown options and missing arguments."""
        pos = 0
        seen: dict[str, str] = {}
        while pos < len(argv):
            word = argv[pos]
            at = pos + 1
            pos += 1
            spec = self.spec(word)
            name, attrs = split_attrs(word)
            if spec is None:
                if looks_like_option(word):
                    raise AqSyntaxError(f"unknown option {name}")
                raise AqSyntaxError(f"unexpected argument {word!r} (argument {at})")
            if spec.unsupported:
                raise NotSupportedError(spec.unsupported)
            if spec.once:
                if spec.once in seen:
                    raise AqSyntaxError(
                        f"{word}: only one {spec.once} per command ({seen[spec.once]} given)"
                    )
                seen[spec.once] = spec.name
            args = []
            for what in spec.args:
                args.append(self._take(argv, pos, name if self.precise_missing else spec.name,
                                       what))  # fmt: skip
                pos += 1
            words: list[str] = []
            if spec.words:
                while pos < len(argv) and not self.ends_list(argv[pos]):
                    words.append(argv[pos])
                    pos += 1
            yield Occurrence(spec, name, attrs, args, words, at)

    def _take(self, argv: list[str], pos: int, opt: str, what: str) -> str:
        if pos >= len(argv):
            if self.precise_missing:
                raise AqSyntaxError(f"{opt}: missing {what} (end of command line)")
            raise AqSyntaxError(f"{opt}: missing {what}")
        word = argv[pos]
        if self.is_option(word):
            if self.precise_missing:
                raise AqSyntaxError(f"{opt}: missing {what} before {word!r} (argument {pos + 1})")
            raise AqSyntaxError(f"{opt}: missing {what}")
        return word
