"""aq_pp's order-sensitive argv syntax parsed into a typed rule list.

The command line is read left to right; options that belong to the processing chain (`-eval`,
`-filt`, `-if` ... `-endif`, `-o`, `-imp`, ...) keep their order, because a row flows through
them in that order. Legacy 1.2.x spellings (spec section 13) are mapped onto the current ones here
so the compiler only sees one form.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ess.aq.colspec import ColSpec, looks_like_colspec, parse_colspec
from ess.errors import AqSyntaxError, NotSupportedError

# ---------------------------------------------------------------- input / output attributes


@dataclass
class InputAttrs:
    """Attributes of `-f` (also used by `-cat`, `-cmb`, `-sub`, `-grep` lookup files)."""

    skip: int = 0
    skip_unit: str = "l"  # l(ines), r(ecords) or b(ytes)
    fmt: str = "csv"  # csv | sep | fix | div | jsn | xml | tab | bin | aq
    sep: str = ","
    quoted: bool = True  # csv quote processing
    eok: bool = False
    eok_limit: int | None = None  # eok=Num: more input errors than this in a file are fatal
    base: str = ""  # jsn/xml: key path prefixed to every column's key spec
    qui: bool = False
    esc: bool = False
    nox: bool = False
    # lookup-only attributes (-sub/-grep/-cmb)
    ncas: bool = False
    pat: bool = False
    req: bool = False
    all: bool = False
    rev: bool = False


@dataclass
class OutputAttrs:
    notitle: bool = False
    app: bool = False
    sep: str = ","
    fmt_g: bool = False
    esc: bool = False
    quoted: bool = True


def _split_attrs(word: str) -> tuple[str, list[str]]:
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


def _sep_value(text: str, where: str) -> str:
    value = text[4:]
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        value = value[1:-1]
    if value.lower().startswith("\\x") and len(value) == 4:
        return chr(int(value[2:], 16))
    if len(value) != 1:
        raise AqSyntaxError(f"{where}: sep= needs exactly one character, got {value!r}")
    return value


def _limit(attr: str, where: str, *, rows: str = "") -> int | None:
    """The Num of `eok=Num` / `qui=Num` (None for the bare attribute)."""
    _, eq, value = attr.partition("=")
    if not eq:
        return None
    if "/" in value and rows:
        raise NotSupportedError(f"{where}: {rows}")
    if not value.isdigit():
        raise AqSyntaxError(f"{where}: bad attribute {attr!r} (expected a number after '=')")
    return int(value)


def parse_input_attrs(attrs: list[str], where: str, *, lookup: bool = False) -> InputAttrs:
    out = InputAttrs()
    for attr in attrs:
        low = attr.lower()
        if low.startswith("+"):
            num = low[1:].rstrip("brl")
            unit = low[1 + len(num) :] or "l"
            if not num.isdigit() or len(unit) != 1:
                raise AqSyntaxError(f"{where}: bad skip attribute {attr!r}")
            out.skip, out.skip_unit = int(num), unit
        elif low == "csv":
            out.fmt, out.quoted = "csv", True
        elif low.startswith("sep="):
            out.sep = _sep_value(attr, where)
            if "csv" not in [a.lower() for a in attrs]:
                out.quoted = False
        elif low == "noq":  # legacy: fields not quoted
            out.quoted = False
        elif low in ("fix", "div", "jsn", "xml", "tab", "bin", "aq"):
            out.fmt = low
        elif low == "eok" or low.startswith("eok="):
            out.eok = True
            out.eok_limit = _limit(low, where, rows="eok=Num/Rows (an error rate)")
        elif low == "qui" or low.startswith("qui="):
            # qui=Num: quiet after Num messages a file; aq_pp prints one summary line a file
            out.qui = _limit(low, where) in (None, 0)
        elif low in ("esc", "nox"):
            setattr(out, low, True)
        elif low.startswith("bz="):
            pass  # record buffer size: irrelevant here, records have no size limit
        elif lookup and low in ("ncas", "pat", "req", "all", "rev"):
            setattr(out, low, True)
        elif low.startswith("base="):
            out.base = attr[5:]
        else:
            raise AqSyntaxError(f"{where}: unknown attribute {attr!r}")
    if out.esc and out.fmt in ("fix", "div", "tab", "jsn", "xml"):
        raise NotSupportedError(f"aq_pp -f,esc with {out.fmt} input")
    if out.fmt in ("bin", "aq"):
        raise NotSupportedError(f"aq_pp input format {out.fmt!r}")
    return out


def parse_output_attrs(attrs: list[str], where: str) -> OutputAttrs:
    out = OutputAttrs()
    for attr in attrs:
        low = attr.lower()
        if low == "notitle":
            out.notitle = True
        elif low == "app":
            out.app = True
        elif low == "csv":
            out.quoted = True
        elif low.startswith("sep="):
            out.sep = _sep_value(attr, where)
        elif low == "noq":
            out.quoted = False
        elif low == "fmt_g":
            out.fmt_g = True
        elif low == "esc":
            out.esc = True
        elif low == "nodelay":
            pass  # we flush per batch; per-record flushing only matters for pipes read live
        elif low in ("jsn", "bin", "aq", "fvar"):
            raise NotSupportedError(f"aq_pp output attribute {attr!r}")
        else:
            raise AqSyntaxError(f"{where}: unknown output attribute {attr!r}")
    return out


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
    check: object  # a rule, evaluated for success/failure
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

# option name → number of fixed arguments, for options that are simply ignored or unsupported
_UNSUPPORTED = {
    "-kenc": "aq_pp -kenc (key encoding)",
    "-kdec": "aq_pp -kdec (key decoding)",
    "-pmod": "aq_pp -pmod (processing modules)",
    "-exp": "aq_pp -exp (Udb export as input)",
    "-cnt": "aq_pp -cnt (Udb count as input)",
    "-quit": "aq_pp -quit",
    "-quitafter": "aq_pp -quitafter",
    "-skip": "aq_pp -skip",
}
_OPTIONS = {
    "-f", "-d", "-cat", "-cmb", "-sub", "-grep", "-eval", "-evlc", "-filt", "-map", "-maprx",
    "-mapf", "-mapfrx", "-mapc", "-var", "-alias", "-renam", "-seed", "-rownum", "-o", "-c",
    "-ovar", "-imp", "-udb", "-ddef", "-spec", "-db", "-seg", "-nobnk", "-nonew", "-if", "-ifnot",
    "-elif", "-elifnot", "-else", "-endif", "-true", "-false", "-verb", "-stat", "-test", "-bz",
    "-notitle", "-emod", "-mesg", "-server", "-local", "-mod", "-h", "-help", "--help",
    *_UNSUPPORTED,
}  # fmt: skip


def is_option(word: str) -> bool:
    return word.startswith("-") and _split_attrs(word)[0].lower() in _OPTIONS


class _Args:
    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.pos = 0

    def more(self) -> bool:
        return self.pos < len(self.argv)

    def take(self, opt: str, what: str) -> str:
        if self.pos >= len(self.argv):
            raise AqSyntaxError(f"{opt}: missing {what} (end of command line)")
        word = self.argv[self.pos]
        if is_option(word) and word != "-":
            raise AqSyntaxError(f"{opt}: missing {what} before {word!r} (argument {self.pos + 1})")
        self.pos += 1
        return word

    def take_while(self, pred: object) -> list[str]:
        words: list[str] = []
        while self.pos < len(self.argv):
            word = self.argv[self.pos]
            if (is_option(word) and word != "-") or not pred(word):  # type: ignore[operator]
                break
            words.append(word)
            self.pos += 1
        return words


_LOOKUP_TAGS = {"from", "to", "x"}


def _is_lookup_spec(word: str) -> bool:
    return word.lower() in _LOOKUP_TAGS or looks_like_colspec(word)


def _lookup_spec(word: str) -> ColSpec:
    low = word.lower()
    if low in ("from", "to"):
        return ColSpec("S", low)
    return parse_colspec(word, what="lookup spec")


def parse_argv(argv: list[str]) -> Program:
    args = _Args(argv)
    main: InputSpec | None = None
    prog = Program(main=InputSpec(["-"], InputAttrs(), []))
    stack: list[If] = []  # open -if blocks
    chain: list[object] = prog.chain
    last_output: Output | None = None
    pending_imp_attrs: list[str] = []

    def body() -> list[object]:
        if not stack:
            return chain
        block = stack[-1]
        return block.orelse if block.orelse is not None else block.branches[-1].body

    def add(rule: object) -> None:
        target = body()
        if stack and not target and stack[-1].orelse is None and not isinstance(rule, If):
            pass
        target.append(rule)

    while args.more():
        at = args.pos + 1
        word = args.argv[args.pos]
        args.pos += 1
        name, attrs = _split_attrs(word)
        opt = name.lower()
        if not is_option(word):
            raise AqSyntaxError(f"unexpected argument {word!r} (argument {at})")
        if opt in ("-h", "-help", "--help"):
            raise AqSyntaxError("help requested")  # handled by the CLI before parsing
        if opt in _UNSUPPORTED:
            raise NotSupportedError(_UNSUPPORTED[opt])
        if opt != "-c" and opt != "-notitle":
            last_output = None if opt not in ("-o",) else last_output
        where = f"{name} (argument {at})"
        if opt == "-f":
            files = args.take_while(lambda w: True)
            if not files:
                raise AqSyntaxError(f"{where}: missing input file name")
            input_attrs = parse_input_attrs(attrs, where)
            if main is not None:  # legacy `-f a -f b`
                main.files.extend(files)
            else:
                main = InputSpec(files, input_attrs, [])
                prog.main = main
        elif opt == "-d":
            items = args.take_while(lambda w: True)
            prog.main.columns = [_column_item(w, where) for w in items]
            if not prog.main.columns:
                raise AqSyntaxError(f"{where}: missing column specs")
        elif opt == "-cat":
            files = args.take_while(lambda w: not looks_like_colspec(w))
            specs = [parse_colspec(w) for w in args.take_while(looks_like_colspec)]
            if not files or not specs:
                raise AqSyntaxError(f"{where}: needs File ... ColSpec ...")
            prog.cats.append(InputSpec(files, parse_input_attrs(attrs, where), list(specs)))
        elif opt in ("-cmb", "-sub", "-grep"):
            col = None if opt == "-cmb" else args.take(name, "column name")
            files = args.take_while(lambda w: not _is_lookup_spec(w))
            specs = [_lookup_spec(w) for w in args.take_while(_is_lookup_spec)]
            if not files:
                raise AqSyntaxError(f"{where}: missing lookup file")
            if opt == "-cmb" and not specs:
                raise AqSyntaxError(f"{where}: missing lookup column specs")
            look_attrs = parse_input_attrs(attrs, where, lookup=True)
            add(Lookup(opt[1:], col, files, look_attrs, specs))
        elif opt in ("-eval", "-evlc"):
            target_word = args.take(name, "target column")
            expr = args.take(name, "expression")
            target: ColSpec | str | None
            if target_word == "-":
                target = None
            elif ":" in target_word:
                target = parse_colspec(target_word, allow_skip=False, what=f"{name} target")
            else:
                target = target_word
            add(Eval(target, expr))
        elif opt == "-filt":
            add(Filt(args.take(name, "filter expression")))
        elif opt in ("-mapf", "-mapfrx"):
            extra = ["rx"] if opt == "-mapfrx" else []
            add(MapF(args.take(name, "column"), args.take(name, "MapFrom"), attrs + extra))
        elif opt == "-mapc":
            tword = args.take(name, "target column")
            tgt = parse_colspec(tword, allow_skip=False) if ":" in tword else tword
            add(MapC(tgt, args.take(name, "MapTo")))
        elif opt in ("-map", "-maprx"):
            extra = ["rx"] if opt == "-maprx" else []
            col = args.take(name, "column")
            add(Map(col, args.take(name, "MapFrom"), args.take(name, "MapTo"), attrs + extra))
        elif opt == "-var":
            spec = parse_colspec(args.take(name, "ColSpec"), allow_skip=False, what="-var spec")
            prog.vars.append(VarDef(spec, args.take(name, "initial value")))
            chain.append(prog.vars[-1])
        elif opt in ("-alias", "-renam"):
            col = args.take(name, "column name")
            add(Alias(col, args.take(name, "new name"), opt == "-renam"))
        elif opt == "-seed":
            prog.seed = _int(args.take(name, "seed"), where)
        elif opt == "-rownum":
            prog.rownum_start = _int(args.take(name, "start number"), where)
        elif opt == "-o":
            out = Output(args.take(name, "output file"), parse_output_attrs(attrs, where))
            add(out)
            last_output = out
            continue
        elif opt == "-notitle":  # legacy: `-o File -notitle`
            if last_output is None:
                raise AqSyntaxError(f"{where}: -notitle must follow -o File")
            last_output.attrs.notitle = True
            continue
        elif opt == "-c":
            cols = args.take_while(lambda w: True)
            if not cols:
                raise AqSyntaxError(f"{where}: missing column names")
            if last_output is not None and last_output.columns is None:
                last_output.columns = cols
            else:  # `-c` without its own `-o`: a separate stdout output at the end
                prog.chain.append(Output("-", OutputAttrs(), cols))
            last_output = None
            continue
        elif opt == "-ovar":
            out = Output(args.take(name, "output file"), parse_output_attrs(attrs, where))
            prog.ovars.append(out)
            last_output = out
            continue
        elif opt == "-imp":
            add(Imp(args.take(name, "Db:Tab"), attrs + pending_imp_attrs))
        elif opt == "-udb":  # legacy prefix of -imp; its -spec/-db sub-options become attributes
            while args.more() and args.argv[args.pos].lower() in ("-spec", "-db"):
                sub = args.argv[args.pos].lower()
                args.pos += 1
                value = args.take(sub, "value")
                pending_imp_attrs.append(f"spec={value}" if sub == "-spec" else f"db={value}")
        elif opt == "-ddef":
            prog.ddef = True
        elif opt in ("-seg", "-spec", "-db", "-bz", "-emod", "-mesg", "-server", "-mod"):
            args.take(name, "value")  # legacy / irrelevant options with one value
        elif opt in ("-nobnk", "-nonew", "-local", "-verb"):
            pass
        elif opt == "-stat":
            prog.stat = True
        elif opt == "-test":
            prog.test = True
        elif opt in ("-true", "-false"):
            add(Const(opt == "-true"))
        elif opt in ("-if", "-ifnot"):
            block = If([])
            add(block)
            stack.append(block)
            block.branches.append(Branch(_check_rule(args, name, at), opt == "-ifnot"))
        elif opt in ("-elif", "-elifnot"):
            if not stack or stack[-1].orelse is not None:
                raise AqSyntaxError(f"{where}: {name} without a matching -if")
            stack[-1].branches.append(Branch(_check_rule(args, name, at), opt == "-elifnot"))
        elif opt == "-else":
            if not stack or stack[-1].orelse is not None:
                raise AqSyntaxError(f"{where}: -else without a matching -if")
            stack[-1].orelse = []
        elif opt == "-endif":
            if not stack:
                raise AqSyntaxError(f"{where}: -endif without a matching -if")
            stack.pop()
        else:  # pragma: no cover - every name in _OPTIONS is handled above
            raise AqSyntaxError(f"unknown option {word!r} (argument {at})")
    if stack:
        raise AqSyntaxError("unterminated -if block: missing -endif at the end of the command")
    if not prog.main.columns:
        raise AqSyntaxError("missing column spec: -d Type:Name ... is required")
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


def _check_rule(args: _Args, opt: str, at: int) -> object:
    """The rule right after `-if`/`-elif`: parse exactly one option into a temporary program."""
    if not args.more():
        raise AqSyntaxError(f"{opt} (argument {at}): missing the rule to check")
    start = args.pos
    word = args.argv[start]
    if not is_option(word) or _split_attrs(word)[0].lower() in (
        "-if", "-ifnot", "-elif", "-elifnot", "-else", "-endif", "-c",
    ):  # fmt: skip
        raise AqSyntaxError(f"{opt} (argument {at}): {word!r} cannot be checked by -if")
    # find the end of this one option by letting the main parser consume it on a sub-list
    end = start + 1
    while end < len(args.argv) and not (is_option(args.argv[end]) and args.argv[end] != "-"):
        end += 1
    sub = parse_argv([*args.argv[start:end], "-d", "X"])
    args.pos = end
    if len(sub.chain) != 1:
        raise AqSyntaxError(f"{opt} (argument {at}): {word!r} cannot be checked by -if")
    return sub.chain[0]


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
