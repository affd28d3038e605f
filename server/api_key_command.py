"""`earshot api-key`: make a static API key for `api_keys_file` (server/auth.py).

The key is printed once; the file keeps only its SHA-256, with the identity it stands for.
"""

from __future__ import annotations

import argparse
import json
import secrets

from earshot.server.auth import ROLES, key_sha256
from earshot.server.cli import Command

KEY_PREFIX = "esk_"  # no dots: a key is never mistaken for a JWT


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def toml_entry(key: str, name: str, role: str, team: str) -> str:
    # json.dumps writes a valid TOML basic string for any text.
    return "\n".join([
        "[[key]]",
        f"sha256 = {json.dumps(key_sha256(key))}",
        f"name = {json.dumps(name)}",
        f"role = {json.dumps(role)}",
        f"team = {json.dumps(team)}",
    ])


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", required=True, help="who or what uses the key (the identity's name)")
    parser.add_argument("--role", required=True, choices=ROLES, help="its Earshot role")
    parser.add_argument("--team", default="", help="its team (supervisors read their team's sessions)")


def _run(args: argparse.Namespace) -> int:
    key = new_key()
    print(f"API key (shown only now; give it to {args.name}):\n\n  {key}\n")
    print("Add this to the api_keys_file (it holds the key's SHA-256, never the key):\n")
    print(toml_entry(key, args.name, args.role, args.team))
    return 0


COMMAND = Command(help="make a static API key and print its api_keys_file entry", add_arguments=_add_arguments, run=_run)
