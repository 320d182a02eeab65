"""Where records end in a block of CSV bytes (shared by the batch cutter and the mapped reader)."""

from __future__ import annotations

from ess.aq.native import count_byte

__all__ = ["record_end"]


def record_end(data: bytes, *, quoted: bool, quotes_before: int = 0) -> int:
    """Index of the last record terminator; with CSV quoting, one that is not inside quotes.

    A chunk always starts at a record boundary, so a newline is outside quotes exactly when
    the number of `"` before it (`quotes_before` of them precede `data` in the chunk) is even
    (doubled quotes count twice and keep the parity).
    """
    cut = data.rfind(b"\n")
    if not quoted or cut < 0:
        return cut
    quotes = quotes_before + count_byte(data, b'"', 0, cut)
    while cut >= 0 and quotes % 2:
        prev = data.rfind(b"\n", 0, cut)
        quotes -= data.count(b'"', prev + 1, cut)
        cut = prev
    return cut
