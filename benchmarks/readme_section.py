"""Replace one `## TITLE` section of benchmarks/README.md (or append it): shared by the
benchmarks that write their latest table there."""

from __future__ import annotations

import re
from pathlib import Path


def replace_section(readme: Path, title: str, section: str) -> None:
    """`section` starts with `## {title}`; the old section runs to the next `## ` heading."""
    text = readme.read_text() if readme.exists() else "# Benchmarks\n\n"
    pattern = re.compile(rf"## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text).rstrip() + "\n"
    else:
        text = text.rstrip() + "\n\n" + section
    readme.write_text(text)
