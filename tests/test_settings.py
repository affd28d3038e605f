import argparse
import json

import pytest

from earshot.server.settings import Secret, SettingsError
from earshot.server.settings_sources import add_settings_arguments, settings_from_args, settings_from_env


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


def parse(args: list[str], env: dict[str, str]):
    parser = argparse.ArgumentParser()
    add_settings_arguments(parser)
    return settings_from_args(parser.parse_args(args), env)


def test_a_toml_settings_file_sits_below_env_vars_and_flags(tmp_path):
    file = tmp_path / "earshot.toml"
    file.write_text('port = 9200\nend_of_speech_ms = 650\nbarge_in = false\npace_max_wps = 4\nasr_model = "base"\n')
    settings = parse(["--settings-file", str(file), "--port", "9300"], {"EARSHOT_END_OF_SPEECH_MS": "700"})
    assert settings.port == 9300  # flag beats file
    assert settings.end_of_speech_ms == 700  # env beats file
    assert settings.barge_in is False and settings.pace_max_wps == 4.0 and settings.asr_model == "base"  # file beats default


def test_a_dotenv_file_named_by_the_environment(tmp_path):
    file = tmp_path / ".env"
    file.write_text('# shared with docker compose\nHF_TOKEN=hf_not_ours\nexport EARSHOT_PORT=9400\nREDIS_URL="redis://127.0.0.1:6391/0"\n')
    settings = settings_from_env({"EARSHOT_SETTINGS_FILE": str(file)})
    assert settings.port == 9400 and settings.redis_url == "redis://127.0.0.1:6391/0"


@pytest.mark.parametrize(
    "text, message",
    [
        ("prot = 9000\n", "earshot.toml: unknown setting 'prot'; did you mean 'port'?"),
        ('port = "eighty"\n', "earshot.toml: port: cannot read 'eighty' as int"),
        ("port = 9000.5\n", "earshot.toml: port: expected int, got 9000.5"),
        ("barge_in = 1\n", "earshot.toml: barge_in: expected bool, got 1"),
        ("port = \n", "is not valid TOML"),
        ("vad_aggressiveness = 7\n", "vad_aggressiveness must be 0, 1, 2 or 3"),
    ],
)
def test_a_bad_settings_file_names_the_file_and_the_key(tmp_path, text, message):
    file = tmp_path / "earshot.toml"
    file.write_text(text)
    with pytest.raises(SettingsError) as error:
        settings_from_env({}, file)
    assert message in str(error.value)


def test_a_bad_dotenv_line_names_the_line(tmp_path):
    file = tmp_path / "earshot.env"
    file.write_text("EARSHOT_PORT=9000\nEARSHOT_PROT=9001\n")
    with pytest.raises(SettingsError, match=r"earshot.env:2: unknown setting EARSHOT_PROT; did you mean 'EARSHOT_PORT'\?"):
        settings_from_env({}, file)
    with pytest.raises(SettingsError, match="does not exist"):
        settings_from_env({}, tmp_path / "missing.toml")
    (tmp_path / "settings.yaml").write_text("port: 1\n")
    with pytest.raises(SettingsError, match="use a .toml file or a .env file"):
        settings_from_env({}, tmp_path / "settings.yaml")


def test_the_llm_key_is_never_shown(tmp_path, capsys):
    key = "sk-very-secret-123"
    file = tmp_path / "earshot.toml"
    file.write_text(f'llm_api_key = "{key}"\n')
    settings = settings_from_env({}, file)
    assert settings.llm_api_key.reveal() == key
    assert key not in repr(settings) and key not in str(settings.llm_api_key)
    assert key not in json.dumps(settings.public()) and settings.public()["llm_api_key"] == Secret.MASK
    assert settings_from_env({"EARSHOT_LLM_API_KEY": key}).llm_api_key.reveal() == key
    assert settings_from_env({}).public()["llm_api_key"] == ""  # no key: nothing to mask
    parser = argparse.ArgumentParser()
    add_settings_arguments(parser)
    parser.print_help()
    assert key not in capsys.readouterr().out


@pytest.mark.parametrize(
    "name, text",
    [("earshot.toml", "session_ttl_s = 3600\n"), ("earshot.env", "EARSHOT_SESSION_TTL_S=3600\n")],
)
def test_a_replaced_setting_names_what_replaced_it(tmp_path, name, text):
    """session_ttl_s became one retention per kind: left in a file or the environment it must not be ignored."""
    file = tmp_path / name
    file.write_text(text)
    with pytest.raises(SettingsError, match="(?i)unknown setting .*session_ttl_s.*replaced by retention_live_s"):
        settings_from_env({}, file)
    with pytest.raises(SettingsError, match="unknown setting EARSHOT_SESSION_TTL_S; it was replaced by retention_live_s"):
        settings_from_env({"EARSHOT_SESSION_TTL_S": "3600"})
    with pytest.raises(SystemExit):
        parse(["--session-ttl-s", "3600"], {})
