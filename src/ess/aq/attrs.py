"""Attributes of aq_pp's inputs (`-f,+1,eok`, also -cat and lookups) and outputs (`-o,notitle`)."""

from __future__ import annotations

from dataclasses import dataclass

from ess.errors import AqSyntaxError, NotSupportedError


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


def _sep_value(text: str, where: str) -> str:
    value = text[4:]
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        value = value[1:-1]
    if value.lower().startswith("\\x") and len(value) == 4:
        try:
            value = chr(int(value[2:], 16))
        except ValueError:
            raise AqSyntaxError(f"{where}: sep={value}: \\xHH needs two hex digits") from None
    if len(value) != 1:
        raise AqSyntaxError(f"{where}: sep= needs exactly one character, got {value!r}")
    if ord(value) > 0x7F:  # the parsers split bytes; a non-ASCII byte is two in UTF-8 text
        raise NotSupportedError(f"{where}: sep= with a byte above \\x7f ({value!r})")
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
