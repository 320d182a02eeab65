"""The builtin functions of the expression language (spec section 8), all registered.

Importing this module registers every family with the one registry in ess.aq.fnreg; the
expression compiler imports it on the first function call, so an aq_pp run without calls
never loads them.
"""

from __future__ import annotations

from ess.aq import functions_match, functions_text, functions_time, functions_web
from ess.aq.fnreg import FUNCTIONS, call

FAMILIES = (functions_text, functions_match, functions_web, functions_time)

__all__ = ["FAMILIES", "FUNCTIONS", "call"]
