"""The README documents every setting and every event type (a new one fails this until documented)."""

from dataclasses import fields

from earshot.server import protocol
from earshot.server.settings import Settings
from earshot.server.settings_sources import env_name, flag_name
from tests.conftest import REPO


def test_every_setting_is_in_the_readme():
    readme = (REPO / "README.md").read_text()
    missing = [f.name for f in fields(Settings) if flag_name(f.name) not in readme or env_name(f.name) not in readme]
    assert missing == []


def test_every_event_type_is_in_the_readme():
    readme = (REPO / "README.md").read_text()
    types = [
        cls.type
        for cls in vars(protocol).values()
        if isinstance(cls, type) and issubclass(cls, protocol.Event) and cls not in (protocol.Event, protocol.AssistUpdate)
    ]
    # AssistUpdate carries the assist agent's payloads; their kinds are the event types.
    types += [cls.kind for cls in vars(protocol).values() if isinstance(cls, type) and isinstance(getattr(cls, "kind", None), str)]
    assert len(types) >= 19
    assert [t for t in types if f"| `{t}` |" not in readme] == []


def test_every_error_code_is_in_the_readme():
    readme = (REPO / "README.md").read_text()
    assert [code for code in protocol.ERROR_CODES if f"`{code}`" not in readme] == []
