"""PII redaction: spans of personal data in a transcript line become typed tags ([CARD], [PHONE], ...).

kinds.py names the kinds and their tags (a leaf: settings checks import it
without loading the recognisers); the redactor itself loads on first use:
`from earshot.models.redaction import Redactor` imports redactor.py, which
imports Presidio only in `Redactor.load()`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["PiiSpan", "Redaction", "Redactor"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from earshot.models.redaction import redactor

        return getattr(redactor, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
