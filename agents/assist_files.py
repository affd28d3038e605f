"""Reading the assist overlay's JSON files (topics, knowledge), which users edit by hand.

So every problem is reported as `<file>: <where>: <what>`, and the server
can refuse to start with a message that says exactly what to fix.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Awaitable, Callable, Sequence

import numpy as np

# What the assist modules embed text with: rows of unit length, one per text.
# The server passes one that runs SentenceEncoder.encode on the encoder's thread.
Embed = Callable[[Sequence[str]], Awaitable[np.ndarray]]


class AssistFileError(ValueError):
    """A topics or knowledge file is missing or malformed; the message names the file and the problem."""


def read_entries(path: Path, error: type[AssistFileError]) -> list[dict[str, Any]]:
    """The file's top-level JSON list of objects."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except OSError as exc:
        raise error(f"{path}: cannot read it: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise error(f"{path}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except UnicodeDecodeError:
        raise error(f"{path}: not UTF-8 text") from None
    if not isinstance(data, list) or not data:
        raise error(f"{path}: expected a non-empty JSON list of entries")
    for index, entry in enumerate(data):
        if not isinstance(entry, dict):
            raise error(f"{path}: entry {index + 1}: expected an object, got {type(entry).__name__}")
    return data


def text_field(path: Path, index: int, entry: dict[str, Any], name: str, error: type[AssistFileError]) -> str:
    value = entry.get(name)
    if value is None:
        raise error(f"{path}: {_where(index, entry)}: missing field {name!r}")
    if not isinstance(value, str) or not value.strip():
        raise error(f"{path}: {_where(index, entry)}: {name!r} must be a non-empty string")
    return value.strip()


def list_field(
    path: Path, index: int, entry: dict[str, Any], name: str, error: type[AssistFileError], required: bool = True
) -> tuple[str, ...]:
    value = entry.get(name)
    if value is None and not required:
        return ()
    if value is None:
        raise error(f"{path}: {_where(index, entry)}: missing field {name!r}")
    if not isinstance(value, list) or not all(isinstance(item, str) and item.strip() for item in value):
        raise error(f"{path}: {_where(index, entry)}: {name!r} must be a list of non-empty strings")
    return tuple(item.strip() for item in value)


def _where(index: int, entry: dict[str, Any]) -> str:
    for key in ("id", "name"):
        if isinstance(entry.get(key), str) and entry[key].strip():
            return f"entry {index + 1} ({entry[key].strip()})"
    return f"entry {index + 1}"
