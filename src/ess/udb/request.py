"""aq_udb's command line (spec 11) read into a Request, with the option table aq_pp shares.

The table (ess.aq.options) takes each option's arguments; the handlers here give them their
meaning: the action and its target, the -pp groups and -if blocks of processing rules, the
limits, sorting and output options. ess.udb.query executes the Request.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ess.aq.attrs import OutputAttrs, parse_output_attrs
from ess.aq.options import Occurrence, OptionTable, OptSpec
from ess.errors import AqSyntaxError, NotSupportedError
from ess.udb.rules import PPGroup, Rule

ACTIONS = ("-crt", "-alt", "-clr", "-inf", "-probe", "-ord", "-exp", "-cnt", "-scn")
_LEGACY = {"-exp": ("-exp_usr",), "-cnt": ("-cnt_usr",), "-scn": ("-scn_usr",),
           "-ord": ("-ord_all",), "-clr": ("-clr_all",)}  # fmt: skip

OPTIONS = OptionTable(
    [
        *(
            OptSpec(a, ("Db[:Tab]",), words=a == "-ord", aliases=_LEGACY.get(a, ()), once="action")
            for a in ACTIONS
        ),
        *(OptSpec(name) for name in ("-verb", "-stat", "-test", "-local")),
        OptSpec("-server", words=True),  # the cluster's workers serve every database
        OptSpec("-spec", ("spec file",)),
        OptSpec("-db", ("database",)),
        OptSpec("-seed", ("seed",)),
        OptSpec("-mod", unsupported="aq_udb -mod (server-side C modules)"),
        OptSpec("-var", ("column", "value")),
        OptSpec("-bvar", ("column", "value")),
        OptSpec("-pp", ("table",)),
        OptSpec("-endpp"),
        OptSpec("-eval", ("column", "expression"), aliases=("-evlc",)),
        OptSpec("-filt", ("filter",)),
        OptSpec("-goto", ("destination",)),
        OptSpec("-del_row"),
        OptSpec("-del_key"),
        *(OptSpec(name) for name in ("-if", "-ifnot", "-elif", "-elifnot", "-else", "-endif")),
        OptSpec("-sort", words=True),
        OptSpec("-dec"),
        OptSpec("-top", ("number",)),
        OptSpec("-lim_key", ("number",), aliases=("-lim_usr",)),
        OptSpec("-lim_rec", ("number",)),
        OptSpec("-key_rec", ("number",)),
        OptSpec("-o", ("output file",), attrs=parse_output_attrs),
        OptSpec("-notitle"),
        OptSpec("-c", words=True),
    ],
    precise_missing=False,
)


@dataclass
class Request:
    action: str = ""
    attrs: list[str] = field(default_factory=list)
    target: str = ""
    ord_cols: list[str] = field(default_factory=list)
    var_sets: list[tuple[str, str]] = field(default_factory=list)
    pp: list[PPGroup] = field(default_factory=list)
    rules: list[Rule] = field(default_factory=list)
    bvars: list[tuple[str, str]] = field(default_factory=list)
    sort: list[str] = field(default_factory=list)
    sort_attrs: list[str] = field(default_factory=list)
    top: int | None = None
    lim_key: int | None = None
    lim_rec: int | None = None
    key_rec: int | None = None
    out_path: str = "-"
    out_attrs: OutputAttrs = field(default_factory=OutputAttrs)
    columns: list[str] | None = None
    spec_file: str | None = None


@dataclass
class _UdbArgv:
    """The meaning of aq_udb's options, applied one Occurrence at a time."""

    argv: list[str]
    req: Request = field(default_factory=Request)
    legacy_db: str | None = None
    stack: list[Rule] = field(default_factory=list)  # open -if blocks
    group: PPGroup | None = None  # open -pp group
    check: tuple[bool, bool] | None = None  # -if/-elif waiting: (negate, opens a block)

    def body(self) -> list[Rule]:
        if self.stack:
            blk = self.stack[-1]
            return blk.orelse if blk.orelse is not None else blk.branches[-1][2]
        return self.group.rules if self.group is not None else self.req.rules

    def run(self) -> Request:
        for occ in OPTIONS.scan(self.argv):
            self.option(occ)
        if self.stack:
            raise AqSyntaxError("unterminated -if: missing -endif")
        if self.group is not None:
            raise AqSyntaxError("unterminated -pp: missing -endpp")
        if not self.req.action:
            raise AqSyntaxError(
                "missing action: -exp, -cnt, -scn, -ord, -clr, -inf, -crt or -probe"
            )
        return self.req

    def option(self, occ: Occurrence) -> None:
        if self.check is not None:
            negate, new_block = self.check
            self.check = None
            rule = _one_rule(occ)
            if new_block:
                blk = Rule("if")
                blk.branches.append((rule, negate, []))
                self.body().append(blk)
                self.stack.append(blk)
            else:
                self.stack[-1].branches.append((rule, negate, []))
            return
        _HANDLERS.get(occ.key, _ignore)(self, occ)

    def expect_check(self, occ: Occurrence, *, negate: bool, new_block: bool) -> None:
        nxt = self.argv[occ.at] if occ.at < len(self.argv) else ""
        spec = OPTIONS.spec(nxt)
        if spec is None or spec.name not in ("-eval", "-filt"):
            raise AqSyntaxError(f"{self.argv[occ.at - 1]}: expected -filt or -eval after it")
        self.check = (negate, new_block)


def _one_rule(occ: Occurrence) -> Rule:
    if occ.key in ("-eval", "-filt", "-goto"):
        return Rule(occ.key[1:], tuple(occ.args))
    if occ.key in ("-del_row", "-del_key"):
        return Rule(occ.key[1:], tuple(occ.attrs))
    raise AqSyntaxError(f"{occ.key} cannot be used here")  # pragma: no cover


def _on_action(p: _UdbArgv, occ: Occurrence) -> None:
    req = p.req
    req.action, req.attrs = occ.key, occ.attrs
    spec_attr = [a[5:] for a in occ.attrs if a.lower().startswith("spec=")]
    req.spec_file = spec_attr[0] if spec_attr else req.spec_file
    tgt = occ.args[0]
    if p.legacy_db and ":" not in tgt and tgt != p.legacy_db:
        tgt = f"{p.legacy_db}:{tgt}"
    req.target = tgt
    if occ.key == "-ord":
        req.ord_cols = occ.words


def _on_spec(p: _UdbArgv, occ: Occurrence) -> None:
    p.req.spec_file = occ.args[0]


def _on_db(p: _UdbArgv, occ: Occurrence) -> None:
    p.legacy_db = occ.args[0]


def _on_var(p: _UdbArgv, occ: Occurrence) -> None:
    p.req.var_sets.append((occ.args[0], occ.args[1]))


def _on_bvar(p: _UdbArgv, occ: Occurrence) -> None:
    pair = (occ.args[0], occ.args[1])
    (p.group.bvars if p.group is not None else p.req.bvars).append(pair)


def _on_pp(p: _UdbArgv, occ: Occurrence) -> None:
    if p.group is not None:
        raise AqSyntaxError("-pp: groups cannot nest (missing -endpp)")
    post = [a for a in occ.attrs if a.lower().startswith("post=")]
    if post and post[0][5:].lower() != "next_pp":
        raise NotSupportedError(f"aq_udb -pp,{post[0]}")
    p.group = PPGroup(occ.args[0], [], [])


def _on_endpp(p: _UdbArgv, occ: Occurrence) -> None:
    if p.group is None or p.stack:
        raise AqSyntaxError("-endpp without -pp (or inside -if)")
    p.req.pp.append(p.group)
    p.group = None


def _on_rule(p: _UdbArgv, occ: Occurrence) -> None:
    p.body().append(_one_rule(occ))


def _on_if(p: _UdbArgv, occ: Occurrence) -> None:
    p.expect_check(occ, negate=occ.key == "-ifnot", new_block=True)


def _on_elif(p: _UdbArgv, occ: Occurrence) -> None:
    if not p.stack or p.stack[-1].orelse is not None:
        raise AqSyntaxError(f"{p.argv[occ.at - 1]} without -if")
    p.expect_check(occ, negate=occ.key == "-elifnot", new_block=False)


def _on_else(p: _UdbArgv, occ: Occurrence) -> None:
    if not p.stack or p.stack[-1].orelse is not None:
        raise AqSyntaxError("-else without -if")
    p.stack[-1].orelse = []


def _on_endif(p: _UdbArgv, occ: Occurrence) -> None:
    if not p.stack:
        raise AqSyntaxError("-endif without -if")
    p.stack.pop()


def _on_sort(p: _UdbArgv, occ: Occurrence) -> None:
    p.req.sort, p.req.sort_attrs = occ.words, [a.lower() for a in occ.attrs]
    if not p.req.sort:
        raise AqSyntaxError("-sort: missing column names")


def _on_dec(p: _UdbArgv, occ: Occurrence) -> None:
    p.req.sort_attrs.append("dec")


def _on_limit(p: _UdbArgv, occ: Occurrence) -> None:
    text = occ.args[0]
    if not text.isdigit():
        raise AqSyntaxError(f"{occ.key}: expected a number, got {text!r}")
    # a limit beyond any row count means no limit (Polars takes at most a 64-bit count)
    setattr(p.req, occ.key[1:], min(int(text), 2**63 - 1))


def _on_output(p: _UdbArgv, occ: Occurrence) -> None:
    p.req.out_path = occ.args[0]
    p.req.out_attrs = occ.parsed_attrs()


def _on_notitle(p: _UdbArgv, occ: Occurrence) -> None:
    p.req.out_attrs.notitle = True


def _on_columns(p: _UdbArgv, occ: Occurrence) -> None:
    p.req.columns = occ.words


def _ignore(p: _UdbArgv, occ: Occurrence) -> None:
    """-verb, -stat, -test, -local, -server, -seed: nothing to do here."""


_HANDLERS: dict[str, Callable[[_UdbArgv, Occurrence], None]] = {
    **{a: _on_action for a in ACTIONS},
    "-spec": _on_spec, "-db": _on_db, "-var": _on_var, "-bvar": _on_bvar,
    "-pp": _on_pp, "-endpp": _on_endpp,
    **{r: _on_rule for r in ("-eval", "-filt", "-goto", "-del_row", "-del_key")},
    "-if": _on_if, "-ifnot": _on_if, "-elif": _on_elif, "-elifnot": _on_elif,
    "-else": _on_else, "-endif": _on_endif, "-sort": _on_sort, "-dec": _on_dec,
    **{n: _on_limit for n in ("-top", "-lim_key", "-lim_rec", "-key_rec")},
    "-o": _on_output, "-notitle": _on_notitle, "-c": _on_columns,
}  # fmt: skip


def parse_argv(argv: list[str]) -> Request:
    """aq_udb's command line as a Request (spec 11)."""
    return _UdbArgv(list(argv)).run()
