"""DESIGN.md section 8, checked: short modules and classes (no module over 600 lines, no class
over 400), so that no file becomes the place everything is added to."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "ess"
MAX_MODULE_LINES = 600
MAX_CLASS_LINES = 400


def test_no_module_over_the_limit() -> None:
    long = {
        str(p.relative_to(SRC)): n
        for p in SRC.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def test_no_class_over_the_limit() -> None:
    long: dict[str, int] = {}
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and node.end_lineno is not None:
                size = node.end_lineno - node.lineno + 1
                if size > MAX_CLASS_LINES:
                    long[f"{path.relative_to(SRC)}:{node.name}"] = size
    assert not long, f"classes over {MAX_CLASS_LINES} lines: {long}"
