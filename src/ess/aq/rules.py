"""aq_pp's order-sensitive argv syntax parsed into a typed rule list.

The command line is read left to right; options that belong to the processing chain (`-eval`,
`-filt`, `-if` ... `-endif`, `-o`, `-imp`, ...) keep their order, because a row flows through
them in that order. Legacy 1.2.x spellings (spec section 13) are mapped onto the current ones here
so the compiler only sees one form.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ess.aq.attrs import (
    InputAttrs,
    OutputAttrs,
    parse_input_attrs,
    parse_output_attrs,
)  # fmt: skip
from ess.aq.colspec import ColSpec, looks_like_colspec, parse_colspec
from ess.aq.options import Occurrence, OptionTable, OptSpec, looks_like_option
from ess.aq.values import wrap_constant
from ess.errors import AqSyntaxError, NotSupportedError

# ---------------------------------------------------------------- rules


@dataclass
class Sep:
    """A `SEP:'text'` item of a `-f,div` column spec."""

    text: str


@dataclass
class InputSpec:
    files: list[str]
    attrs: InputAttrs
    columns: list[ColSpec | Sep]


@dataclass
class Eval:
    target: ColSpec | str | None  # new column, existing name, or `-` (discard)
    expr: str


@dataclass
class Filt:
    expr: str


@dataclass
class MapF:
    col: str
    pattern: str
    attrs: list[str]


@dataclass
class MapC:
    target: ColSpec | str
    template: str


@dataclass
class Map:
    col: str
    pattern: str
    template: str
    attrs: list[str]


@dataclass
class Lookup:
    """`-sub`, `-grep` (col set) and `-cmb` (col None): a lookup data set and its column spec."""

    kind: str  # sub | grep | cmb
    col: str | None
    files: list[str]
    attrs: InputAttrs
    specs: list[ColSpec]


@dataclass
class Output:
    path: str
    attrs: OutputAttrs
    columns: list[str] | None = None


@dataclass
class Imp:
    target: str
    attrs: list[str]


@dataclass
class Const:
    """`-true` / `-false`: a rule that always succeeds / fails."""

    value: bool


@dataclass
class Branch:
    check: object  # a rule, evaluated for success/failure (None while it is being parsed)
    negate: bool
    body: list[object] = field(default_factory=list)


@dataclass
class If:
    branches: list[Branch]
    orelse: list[object] | None = None


@dataclass
class Alias:
    col: str
    alt: str
    rename: bool


@dataclass
class VarDef:
    spec: ColSpec
    value: str


@dataclass
class Program:
    main: InputSpec
    cats: list[InputSpec] = field(default_factory=list)
    vars: list[VarDef] = field(default_factory=list)
    chain: list[object] = field(default_factory=list)
    ovars: list[Output] = field(default_factory=list)
    seed: int = 1
    rownum_start: int = 1
    stat: bool = False
    test: bool = False
    ddef: bool = False


CHECK_RULES = (Eval, Filt, MapF, MapC, Map, Lookup, Const, Imp, Output)


__all__ = ["InputAttrs", "OutputAttrs", "parse_input_attrs", "parse_output_attrs"]  # re-exported


def _lookup_attrs(attrs: list[str], where: str) -> InputAttrs:
    return parse_input_attrs(attrs, where, lookup=True)


def _unsupported(name: str, what: str) -> OptSpec:
    return OptSpec(name, unsupported=f"aq_pp {what}")


OPTIONS = OptionTable([
    OptSpec("-f", words=True, attrs=parse_input_attrs),
    OptSpec("-d", words=True),
    OptSpec("-cat", words=True, attrs=parse_input_attrs),
    OptSpec("-cmb", words=True, attrs=_lookup_attrs),
    OptSpec("-sub", ("column name",), words=True, attrs=_lookup_attrs),
    OptSpec("-grep", ("column name",), words=True, attrs=_lookup_attrs),
    OptSpec("-eval", ("target column", "expression"), aliases=("-evlc",)),
    OptSpec("-filt", ("filter expression",)),
    OptSpec("-mapf", ("column", "MapFrom")),
    OptSpec("-mapfrx", ("column", "MapFrom")),
    OptSpec("-mapc", ("target column", "MapTo")),
    OptSpec("-map", ("column", "MapFrom", "MapTo")),
    OptSpec("-maprx", ("column", "MapFrom", "MapTo")),
    OptSpec("-var", ("ColSpec", "initial value")),
    OptSpec("-alias", ("column name", "new name")),
    OptSpec("-renam", ("column name", "new name")),
    OptSpec("-seed", ("seed",)),
    OptSpec("-rownum", ("start number",)),
    OptSpec("-o", ("output file",), attrs=parse_output_attrs),
    OptSpec("-ovar", ("output file",), attrs=parse_output_attrs),
    OptSpec("-c", words=True),
    OptSpec("-notitle"),
    OptSpec("-imp", ("Db:Tab",)),
    OptSpec("-udb"),
    OptSpec("-ddef"),
    OptSpec("-spec", ("value",)),
    OptSpec("-db", ("value",)),
    *(OptSpec(name, ("value",)) for name in ("-seg", "-bz", "-emod", "-mesg", "-server", "-mod")),
    *(OptSpec(name) for name in ("-nobnk", "-nonew", "-local", "-verb", "-stat", "-test")),
    *(OptSpec(name) for name in ("-if", "-ifnot", "-elif", "-elifnot", "-else", "-endif")),
    OptSpec("-true"),
    OptSpec("-false"),
    OptSpec("-h", aliases=("-help", "--help")),
    _unsupported("-kenc", "-kenc (key encoding)"),
    _unsupported("-kdec", "-kdec (key decoding)"),
    _unsupported("-pmod", "-pmod (processing modules)"),
    _unsupported("-exp", "-exp (Udb export as input)"),
    _unsupported("-cnt", "-cnt (Udb count as input)"),
    _unsupported("-quit", "-quit"),
    _unsupported("-quitafter", "-quitafter"),
    _unsupported("-skip", "-skip"),
])  # fmt: skip

#: options that cannot be the rule an -if/-elif checks
_NOT_CHECKABLE = ("-if", "-ifnot", "-elif", "-elifnot", "-else", "-endif", "-c")


def is_option(word: str) -> bool:
    return OPTIONS.is_option(word)


_LOOKUP_TAGS = {"from", "to", "x"}


def _is_lookup_spec(word: str) -> bool:
    return word.lower() in _LOOKUP_TAGS or looks_like_colspec(word)


def _lookup_spec(word: str) -> ColSpec:
    low = word.lower()
    if low in ("from", "to"):
        return ColSpec("S", low)
    return parse_colspec(word, what="lookup spec")


def _split_words(
    words: list[str], first: Callable[[str], bool], occ: Occurrence, offset: int = 0
) -> tuple[list[str], list[str]]:
    """`File ... Spec ...`: the words before the first spec, then the specs (all of them)."""
    cut = next((i for i, w in enumerate(words) if first(w)), len(words))
    for i, word in enumerate(words[cut:], cut):
        if not first(word):  # a word after the specs that is no spec
            raise AqSyntaxError(
                f"unexpected argument {word!r} (argument {occ.at + offset + i + 1})"
            )
    return words[:cut], words[cut:]


@dataclass
class _PPArgv:
    """The meaning of aq_pp's options, applied one Occurrence at a time."""

    argv: list[str]
    prog: Program = field(default_factory=lambda: Program(InputSpec(["-"], InputAttrs(), [])))
    main: InputSpec | None = None
    stack: list[If] = field(default_factory=list)  # open -if blocks
    last_output: Output | None = None  # what a following -c / -notitle belongs to
    udb_opts: bool = False  # right after -udb: -spec/-db are its sub-options
    pending_imp_attrs: list[str] = field(default_factory=list)
    check: tuple[str, int, bool] | None = None  # -if/-elif waiting for its rule to check
    captured: list[object] = field(default_factory=list)

    def body(self) -> list[object]:
        if self.check is not None:
            return self.captured
        if not self.stack:
            return self.prog.chain
        block = self.stack[-1]
        return block.orelse if block.orelse is not None else block.branches[-1].body

    def add(self, rule: object) -> None:
        self.body().append(rule)

    def run(self) -> Program:
        for occ in OPTIONS.scan(self.argv):
            self.option(occ)
        if self.check is not None:
            opt, at, _ = self.check
            raise AqSyntaxError(f"{opt} (argument {at}): missing the rule to check")
        if self.stack:
            raise AqSyntaxError("unterminated -if block: missing -endif at the end of the command")
        if not self.prog.main.columns:
            raise AqSyntaxError("missing column spec: -d Type:Name ... is required")
        return self.prog

    def option(self, occ: Occurrence) -> None:
        key = occ.key
        checking = self.check
        if key not in ("-c", "-notitle", "-o", "-ovar"):
            self.last_output = None
        if self.udb_opts and key in ("-spec", "-db"):
            self.pending_imp_attrs.append(f"{key[1:]}={occ.args[0]}")
            return
        self.udb_opts = key == "-udb"
        HANDLERS[key](self, occ)
        if checking is not None and self.check is checking:
            self.finish_check(occ)

    def start_check(self, occ: Occurrence, negate: bool) -> None:
        """-if/-elif: the next option on the command line is the rule to check."""
        nxt = self.argv[occ.at] if occ.at < len(self.argv) else None
        if nxt is None:
            raise AqSyntaxError(f"{occ.where}: missing the rule to check")
        spec = OPTIONS.spec(nxt)
        if nxt == "-" or (spec is None and not looks_like_option(nxt)) or (
            spec is not None and spec.name in _NOT_CHECKABLE
        ):  # fmt: skip
            raise AqSyntaxError(f"{occ.where}: {nxt!r} cannot be checked by -if")
        self.check = (occ.name, occ.at, negate)
        self.captured = []

    def finish_check(self, occ: Occurrence) -> None:
        assert self.check is not None
        opt, at, negate = self.check
        self.check = None
        self.last_output = None  # a -c after `-if -o File` is an output of its own
        if len(self.captured) != 1:
            word = self.argv[occ.at - 1]
            raise AqSyntaxError(f"{opt} (argument {at}): {word!r} cannot be checked by -if")
        self.stack[-1].branches[-1].check = self.captured[0]
        self.stack[-1].branches[-1].negate = negate


def _on_input(p: _PPArgv, occ: Occurrence) -> None:
    if not occ.words:
        raise AqSyntaxError(f"{occ.where}: missing input file name")
    attrs = occ.parsed_attrs()
    if p.main is not None:  # legacy `-f a -f b`
        p.main.files.extend(occ.words)
    else:
        p.main = p.prog.main = InputSpec(occ.words, attrs, [])


def _on_columns(p: _PPArgv, occ: Occurrence) -> None:
    p.prog.main.columns = [_column_item(w, occ.where) for w in occ.words]
    if not p.prog.main.columns:
        raise AqSyntaxError(f"{occ.where}: missing column specs")


def _on_cat(p: _PPArgv, occ: Occurrence) -> None:
    files, words = _split_words(occ.words, looks_like_colspec, occ)
    specs = [parse_colspec(w) for w in words]
    if not files or not specs:
        raise AqSyntaxError(f"{occ.where}: needs File ... ColSpec ...")
    p.prog.cats.append(InputSpec(files, occ.parsed_attrs(), list(specs)))


def _on_lookup(p: _PPArgv, occ: Occurrence) -> None:
    col = occ.args[0] if occ.args else None
    files, words = _split_words(occ.words, _is_lookup_spec, occ, len(occ.args))
    specs = [_lookup_spec(w) for w in words]
    if not files:
        raise AqSyntaxError(f"{occ.where}: missing lookup file")
    if occ.key == "-cmb" and not specs:
        raise AqSyntaxError(f"{occ.where}: missing lookup column specs")
    p.add(Lookup(occ.key[1:], col, files, occ.parsed_attrs(), specs))


def _on_eval(p: _PPArgv, occ: Occurrence) -> None:
    target_word, expr = occ.args
    target: ColSpec | str | None
    if target_word == "-":
        target = None
    elif ":" in target_word:
        target = parse_colspec(target_word, allow_skip=False, what=f"{occ.name} target")
    else:
        target = target_word
    p.add(Eval(target, expr))


def _on_map(p: _PPArgv, occ: Occurrence) -> None:
    extra = ["rx"] if occ.key.endswith("rx") else []
    if occ.key.startswith("-mapf"):
        p.add(MapF(occ.args[0], occ.args[1], occ.attrs + extra))
    else:
        p.add(Map(occ.args[0], occ.args[1], occ.args[2], occ.attrs + extra))


def _on_mapc(p: _PPArgv, occ: Occurrence) -> None:
    tword, template = occ.args
    tgt = parse_colspec(tword, allow_skip=False) if ":" in tword else tword
    p.add(MapC(tgt, template))


def _on_var(p: _PPArgv, occ: Occurrence) -> None:
    spec = parse_colspec(occ.args[0], allow_skip=False, what="-var spec")
    p.prog.vars.append(VarDef(spec, occ.args[1]))
    (p.captured if p.check is not None else p.prog.chain).append(p.prog.vars[-1])


def _on_output(p: _PPArgv, occ: Occurrence) -> None:
    out = Output(occ.args[0], occ.parsed_attrs())
    if occ.key == "-ovar":
        p.prog.ovars.append(out)
    else:
        p.add(out)
    p.last_output = out


def _on_notitle(p: _PPArgv, occ: Occurrence) -> None:  # legacy: `-o File -notitle`
    if p.last_output is None:
        raise AqSyntaxError(f"{occ.where}: -notitle must follow -o File")
    p.last_output.attrs.notitle = True


def _on_c(p: _PPArgv, occ: Occurrence) -> None:
    if not occ.words:
        raise AqSyntaxError(f"{occ.where}: missing column names")
    if p.last_output is not None and p.last_output.columns is None:
        p.last_output.columns = occ.words
    else:  # `-c` without its own `-o`: a separate stdout output at the end
        p.prog.chain.append(Output("-", OutputAttrs(), occ.words))
    p.last_output = None


def _on_if(p: _PPArgv, occ: Occurrence) -> None:
    block = If([])
    p.add(block)
    p.stack.append(block)
    block.branches.append(Branch(None, occ.key == "-ifnot"))
    p.start_check(occ, occ.key == "-ifnot")


def _on_elif(p: _PPArgv, occ: Occurrence) -> None:
    if not p.stack or p.stack[-1].orelse is not None:
        raise AqSyntaxError(f"{occ.where}: {occ.name} without a matching -if")
    p.stack[-1].branches.append(Branch(None, occ.key == "-elifnot"))
    p.start_check(occ, occ.key == "-elifnot")


def _on_else(p: _PPArgv, occ: Occurrence) -> None:
    if not p.stack or p.stack[-1].orelse is not None:
        raise AqSyntaxError(f"{occ.where}: -else without a matching -if")
    p.stack[-1].orelse = []


def _on_endif(p: _PPArgv, occ: Occurrence) -> None:
    if not p.stack:
        raise AqSyntaxError(f"{occ.where}: -endif without a matching -if")
    p.stack.pop()


def _on_help(p: _PPArgv, occ: Occurrence) -> None:
    raise AqSyntaxError("help requested")  # handled by the CLI before parsing


def _setter(**values: object) -> Callable[[_PPArgv, Occurrence], None]:
    def handler(p: _PPArgv, occ: Occurrence) -> None:
        for name, value in values.items():
            setattr(p.prog, name, value)

    return handler


def _int_setter(name: str, typ: str) -> Callable[[_PPArgv, Occurrence], None]:
    """An integer setting, wrapped into its C type (`typ`) like Essentia's strtoul/strtol."""

    def handler(p: _PPArgv, occ: Occurrence) -> None:
        setattr(p.prog, name, wrap_constant(_int(occ.args[0], occ.where), typ))

    return handler


def _ignore(p: _PPArgv, occ: Occurrence) -> None:
    """Legacy or irrelevant options (their value, if any, is already taken)."""


HANDLERS: dict[str, Callable[[_PPArgv, Occurrence], None]] = {
    "-f": _on_input, "-d": _on_columns, "-cat": _on_cat,
    "-cmb": _on_lookup, "-sub": _on_lookup, "-grep": _on_lookup,
    "-eval": _on_eval, "-filt": lambda p, occ: p.add(Filt(occ.args[0])),
    "-mapf": _on_map, "-mapfrx": _on_map, "-map": _on_map, "-maprx": _on_map, "-mapc": _on_mapc,
    "-var": _on_var,
    "-alias": lambda p, occ: p.add(Alias(occ.args[0], occ.args[1], False)),
    "-renam": lambda p, occ: p.add(Alias(occ.args[0], occ.args[1], True)),
    "-seed": _int_setter("seed", "L"), "-rownum": _int_setter("rownum_start", "LS"),
    "-o": _on_output, "-ovar": _on_output, "-notitle": _on_notitle, "-c": _on_c,
    "-imp": lambda p, occ: p.add(Imp(occ.args[0], occ.attrs + p.pending_imp_attrs)),
    "-udb": _ignore, "-ddef": _setter(ddef=True), "-stat": _setter(stat=True),
    "-test": _setter(test=True),
    "-true": lambda p, occ: p.add(Const(True)), "-false": lambda p, occ: p.add(Const(False)),
    "-if": _on_if, "-ifnot": _on_if, "-elif": _on_elif, "-elifnot": _on_elif,
    "-else": _on_else, "-endif": _on_endif, "-h": _on_help,
    **{name: _ignore for name in ("-spec", "-db", "-seg", "-bz", "-emod", "-mesg", "-server",
                                  "-mod", "-nobnk", "-nonew", "-local", "-verb")},
}  # fmt: skip


def parse_argv(argv: list[str]) -> Program:
    prog = _PPArgv(list(argv)).run()
    for source in [prog.main, *prog.cats]:
        escaped = any(isinstance(c, ColSpec) and c.has("esc") for c in source.columns)
        if escaped and source.attrs.fmt not in ("csv", "sep"):
            raise NotSupportedError(f"the esc column attribute with -f,{source.attrs.fmt} input")
        if source.attrs.fmt in ("jsn", "xml"):
            _check_key_specs(source)
    return prog


def _check_key_specs(source: InputSpec) -> None:
    """Key paths of jsn/xml columns are checked before any input is read."""
    from ess.aq.keyed import parse_keyspec

    for col in source.columns:
        if not isinstance(col, ColSpec) or col.skip:
            continue
        if not (col.key_spec or source.attrs.base):
            raise AqSyntaxError(
                f"-d {col.name}: -f,{source.attrs.fmt} needs a key path (Type:Name:Key.Path)"
            )
        parse_keyspec(col.key_spec, source.attrs.base)


def _column_item(word: str, where: str) -> ColSpec | Sep:
    if word[:4].lower() == "sep:":
        if not word[4:]:
            raise AqSyntaxError(f"{where}: empty separator in {word!r}")
        return Sep(word[4:])
    return parse_colspec(word)


def _int(text: str, where: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise AqSyntaxError(f"{where}: expected an integer, got {text!r}") from None
