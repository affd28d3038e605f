"""Where settings come from, in rising order of precedence:

1. each field's default (server/settings.py);
2. a settings file, when `--settings-file` or `EARSHOT_SETTINGS_FILE` names one:
   TOML with the field names as keys (`asr_model = "base"`), or a `.env`
   file of `EARSHOT_<FIELD>=value` lines (other keys, such as the HF_TOKEN a
   compose file reads, are left alone);
3. environment variables `EARSHOT_<FIELD>` (upper case); `REDIS_URL` is also
   read without the prefix, the name hosting platforms use;
4. command-line flags `--<field-with-dashes>`.

A value that cannot be read names where it came from (`EARSHOT_PORT`,
`--port`, `earshot.toml: port`); a file key that is no setting is an error
too, with the closest setting's name. A setting that was replaced (RETIRED)
names what replaced it, in a file and in the environment alike: left in
place it would be ignored in silence. A secret's value is never echoed.
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any, Mapping, Optional

from earshot.server.settings import Secret, Settings, SettingsError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

SETTINGS_FILE_ENV = "EARSHOT_SETTINGS_FILE"
_FIELDS = {f.name: f for f in fields(Settings)}
# Settings that are no more -> what replaced them.
RETIRED = {"session_ttl_s": "retention_live_s, retention_transcripts_s and retention_reports_s"}


def env_name(field_name: str) -> str:
    return "EARSHOT_" + field_name.upper()


def flag_name(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


def settings_from_env(
    env: Mapping[str, str] | None = None, settings_file: Optional[Path] = None, **overrides: Any
) -> Settings:
    """Defaults, then the settings file, then env vars, then explicit overrides (already typed)."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    file = settings_file or (Path(env[SETTINGS_FILE_ENV]) if env.get(SETTINGS_FILE_ENV) else None)
    if file is not None:
        values.update(read_settings_file(file))
    for name in RETIRED:
        if env_name(name) in env:
            raise SettingsError(f"unknown setting {env_name(name)}{_did_you_mean(env_name(name), {})}")
    for f in fields(Settings):
        raw = env.get(env_name(f.name))
        if raw is None and f.name == "redis_url":
            raw = env.get("REDIS_URL")
        if raw is not None:
            values[f.name] = _convert(env_name(f.name), f.type, raw)
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Settings(**values)


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per settings field, and --settings-file. Unset flags stay None so lower sources still apply."""
    group = parser.add_argument_group("settings (each also EARSHOT_<NAME> in the environment, or a key of --settings-file)")
    group.add_argument(
        "--settings-file", type=Path, default=None,
        help=f"a TOML or .env file of settings, below the environment and flags (also {SETTINGS_FILE_ENV})",
    )
    for f in fields(Settings):
        help_text = f"{f.metadata.get('help', '')} (default: {f.default})"
        if _kind(f.type) is bool:
            group.add_argument(
                flag_name(f.name), dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_text
            )
        else:
            group.add_argument(
                flag_name(f.name),
                dest=f.name,
                default=None,
                type=lambda raw, f=f: _convert(flag_name(f.name), f.type, raw, secret=_kind(f.type) is Secret),
                help=help_text,
            )


def settings_from_args(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> Settings:
    overrides = {f.name: getattr(args, f.name, None) for f in fields(Settings)}
    return settings_from_env(env, getattr(args, "settings_file", None), **overrides)


def read_settings_file(path: Path) -> dict[str, Any]:
    """The settings a TOML or .env file sets, typed; SettingsError names the file and the key."""
    if not path.is_file():
        raise SettingsError(f"settings file {path} does not exist")
    if path.suffix == ".toml":
        return _read_toml(path)
    if path.name == ".env" or path.suffix == ".env":
        return _read_dotenv(path)
    raise SettingsError(f"settings file {path}: use a .toml file or a .env file")


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SettingsError(f"settings file {path} is not valid TOML: {exc}") from None
    values: dict[str, Any] = {}
    for key, value in data.items():
        f = _FIELDS.get(key)
        if f is None:
            raise SettingsError(f"{path.name}: unknown setting {key!r}{_did_you_mean(key, _FIELDS)}")
        values[key] = _from_toml(f"{path.name}: {key}", _kind(f.type), value)
    return values


def _from_toml(where: str, kind: type, value: Any) -> Any:
    """A TOML value for a field of `kind`: strings are read as the environment's are; numbers and booleans must fit."""
    if isinstance(value, str):
        return _convert(where, kind, value, secret=kind is Secret)
    fits = {bool: (bool,), int: (int,), float: (int, float)}.get(kind, ())
    if isinstance(value, fits) and (kind is bool or not isinstance(value, bool)):
        return float(value) if kind is float else value
    raise SettingsError(f"{where}: expected {kind.__name__}, got {value!r}")


def _read_dotenv(path: Path) -> dict[str, Any]:
    by_env = {env_name(name): f for name, f in _FIELDS.items()}
    values: dict[str, Any] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, equals, raw = line.removeprefix("export ").partition("=")
        key, raw = key.strip(), raw.strip()
        if not equals:
            raise SettingsError(f"{path.name}:{number}: expected KEY=value")
        if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "\"'":
            raw = raw[1:-1]
        if key == "REDIS_URL":
            key = env_name("redis_url")
        f = by_env.get(key)
        if f is None:
            if key.startswith("EARSHOT_") and key != SETTINGS_FILE_ENV:
                raise SettingsError(f"{path.name}:{number}: unknown setting {key}{_did_you_mean(key, by_env)}")
            continue  # another tool's variable (HF_TOKEN for compose, ...)
        values[f.name] = _convert(f"{path.name}:{number}: {key}", f.type, raw, secret=_kind(f.type) is Secret)
    return values


def _did_you_mean(key: str, known: Mapping[str, Any]) -> str:
    retired = key.removeprefix("EARSHOT_").lower()
    if retired in RETIRED:
        return f"; it was replaced by {RETIRED[retired]}"
    close = difflib.get_close_matches(key, list(known), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _kind(annotation: Any) -> type:
    """A field's type; annotations are strings here (`from __future__ import annotations` in settings.py)."""
    if isinstance(annotation, type):
        return annotation
    return {"bool": bool, "int": int, "float": float, "Path": Path, "Secret": Secret}.get(annotation, str)


def _convert(name: str, annotation: Any, raw: str, secret: bool = False) -> Any:
    kind = _kind(annotation)
    try:
        if kind is bool:
            lowered = raw.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(raw)
        return kind(raw)  # int, float, Path, Secret or str
    except ValueError:
        shown = Secret.MASK if secret else repr(raw)
        raise SettingsError(f"{name}: cannot read {shown} as {kind.__name__}") from None
