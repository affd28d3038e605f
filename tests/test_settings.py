import argparse

import pytest

from server.settings import SettingsError, add_settings_arguments, settings_from_args, settings_from_env


def test_env_vars_then_flags_override_defaults():
    parser = argparse.ArgumentParser()
    add_settings_arguments(parser)
    env = {"EARSHOT_PORT": "9000", "EARSHOT_END_OF_SPEECH_MS": "700", "REDIS_URL": "redis://127.0.0.1:6390/0"}
    settings = settings_from_args(parser.parse_args(["--port", "9100", "--ice-loopback-only"]), env)
    assert settings.port == 9100  # flag beats env
    assert settings.end_of_speech_ms == 700  # env beats default
    assert settings.redis_url == "redis://127.0.0.1:6390/0"
    assert settings.ice_loopback_only is True


def test_every_problem_is_reported_at_once():
    with pytest.raises(SettingsError) as error:
        settings_from_env({"EARSHOT_VAD_AGGRESSIVENESS": "7", "EARSHOT_PACE_MIN_WPS": "4"})
    message = str(error.value)
    assert "vad_aggressiveness" in message and "pace_min_wps" in message


def test_unreadable_values_name_the_variable():
    with pytest.raises(SettingsError, match="EARSHOT_PORT"):
        settings_from_env({"EARSHOT_PORT": "eighty"})
