"""The settings module is the one list of ESS_* variables: sources and docs agree with it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ess import settings
from ess.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
NAME = re.compile(r"\bESS_[A-Z0-9_]*[A-Z0-9]\b")


def _names_in_sources() -> dict[str, str]:
    found: dict[str, str] = {}
    files = [*ROOT.glob("src/ess/**/*.py"), *ROOT.glob("src/ess/**/*.c"), *ROOT.glob("scripts/*")]
    for path in files:
        if path.is_file():
            for name in NAME.findall(path.read_text(errors="replace")):
                found.setdefault(name, str(path.relative_to(ROOT)))
    return found


def test_every_variable_in_the_sources_is_listed() -> None:
    missing = {n: f for n, f in _names_in_sources().items() if n not in settings.BY_NAME}
    assert not missing, f"add these to src/ess/settings.py: {missing}"


def test_docs_are_generated_from_the_module() -> None:
    docs = (ROOT / "docs" / "settings.md").read_text()
    assert docs == settings.markdown(), "run: python -m ess.settings > docs/settings.md"


def test_names_are_unique_and_kinds_known() -> None:
    names = [s.name for s in settings.SETTINGS]
    assert len(names) == len(set(names))
    kinds = {"user", "tuning", "command", "worker", "boot", "test", "cflag"}
    assert {s.kind for s in settings.SETTINGS} <= kinds


def test_env_reads_defaults_and_refuses_unlisted_names() -> None:
    assert settings.env("ESS_AQ_CHUNK_MB", {}) == "16"
    assert settings.env("ESS_AQ_CHUNK_MB", {"ESS_AQ_CHUNK_MB": "4"}) == "4"
    assert settings.env("ESS_AQ_CHUNK_MB", {"ESS_AQ_CHUNK_MB": ""}) == "16"
    with pytest.raises(ConfigError, match="ESS_NOPE"):
        settings.env("ESS_NOPE", {})
    with pytest.raises(ConfigError):
        settings.env("ESS_NO_SIMD", {})
