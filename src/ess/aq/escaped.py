"""`esc` input: a backslash makes the next byte literal (a separator, a quote, a backslash).

`-f,esc` applies it to every field of a `csv`/`sep` input, the column attribute `esc` (`S,esc:Name`)
to one field. Polars' CSV reader knows no escapes, so a chunk that holds a backslash is split
with one regular expression per record instead (still vectorised: `str.extract_groups`), then
quotes and escapes are removed. Decisions (the spec says no more than the above):
* with escapes, a record is one line (a newline inside quotes ends the record);
* `\\x` is `x` for any byte `x`: `\\n` is the letter n, not a newline (use `clf` for that);
* a backslash at the very end of a field stays a backslash.
"""

from __future__ import annotations

import polars as pl

from ess.aq.colspec import ColSpec
from ess.aq.rules import InputAttrs

TAIL = "__tail"  # the extra fields of a record longer than the spec (for `nox`)


def applies(attrs: InputAttrs, specs: list[ColSpec]) -> bool:
    """Whether any field of this input is read with escapes."""
    return attrs.fmt in ("csv", "sep") and (attrs.esc or any(s.has("esc") for s in specs))


def split_records(lines: pl.Series, attrs: InputAttrs, specs: list[ColSpec]) -> pl.DataFrame:
    """String fields `f0 .. f{n-1}` (and `__tail`: the rest of a longer record, else null).

    A record that does not have the field layout at all (e.g. an unterminated quote) gives
    nulls in every field, which the caller reports as a record that does not match the spec.
    Missing trailing fields are empty, as in the CSV path."""
    names = [f"f{i}" for i in range(len(specs))] + [TAIL]
    pattern = _record_regex(attrs, specs)
    frame = (
        pl.DataFrame({"l": lines})
        .select(pl.col("l").str.extract_groups(pattern).struct.rename_fields(names))
        .unnest("l")
    )
    matched = pl.col("f0").is_not_null()
    fields = [
        pl.when(matched).then(_unquote(pl.col(n).fill_null(""), attrs, s)).alias(n)
        for n, s in zip(names, specs, strict=False)
    ]
    return frame.with_columns(fields)


def _record_regex(attrs: InputAttrs, specs: list[ColSpec]) -> str:
    sep = f"\\x{{{ord(attrs.sep):X}}}"  # the regex engine's hex form works in and out of [...]
    fields = [_field_regex(attrs, spec, sep) for spec in specs]
    # later fields are optional as a group (a short record ends early), and the rest of a long
    # one is only taken after the last field: a malformed field cannot pass for extra fields
    body = f"(?:{sep}(.*))?"
    for field in reversed(fields[1:]):
        body = f"(?:{sep}{field}{body})?"
    return f"^{fields[0]}{body}$"


def _csv(attrs: InputAttrs) -> bool:
    return attrs.quoted and attrs.fmt == "csv"


def _esc(attrs: InputAttrs, spec: ColSpec) -> bool:
    return attrs.esc or spec.has("esc")


def _field_regex(attrs: InputAttrs, spec: ColSpec, sep: str) -> str:
    # a plain field runs to the separator; `"` cannot appear in it in CSV, `\` escapes a byte
    stop = sep + ('"' if _csv(attrs) else "") + ("\\\\" if _esc(attrs, spec) else "")
    plain = f"(?:[^{stop}]|\\\\.)*\\\\?" if _esc(attrs, spec) else f"[^{stop}]*"
    if not _csv(attrs):
        return f"({plain})"
    quoted = '"(?:[^"\\\\]|\\\\.|"")*"' if _esc(attrs, spec) else '"(?:[^"]|"")*"'
    return f"({quoted}|{plain})"


def _unquote(value: pl.Expr, attrs: InputAttrs, spec: ColSpec) -> pl.Expr:
    if _csv(attrs):
        inner = value.str.slice(1, value.str.len_chars() - 2).str.replace_all('""', '"')
        value = (
            pl.when(value.str.starts_with('"') & (value.str.len_chars() >= 2))
            .then(inner)
            .otherwise(value)
        )
    if _esc(attrs, spec):
        value = value.str.replace_all(r"\\(.)", "$1")
    return value
