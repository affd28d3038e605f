"""The README's configuration table documents every setting (a new field fails this until documented)."""

from dataclasses import fields

from server.settings import Settings, env_name, flag_name
from tests.conftest import REPO


def test_every_setting_is_in_the_readme():
    readme = (REPO / "README.md").read_text()
    missing = [f.name for f in fields(Settings) if flag_name(f.name) not in readme or env_name(f.name) not in readme]
    assert missing == []


def test_every_event_type_is_in_the_readme():
    from server import events

    readme = (REPO / "README.md").read_text()
    from agents import assist_updates

    types = [
        cls.type
        for cls in vars(events).values()
        if isinstance(cls, type) and issubclass(cls, events.Event) and cls not in (events.Event, events.AssistUpdate)
    ]
    # AssistUpdate carries the assist agent's updates; their kinds are the event types.
    types += [cls.kind for cls in vars(assist_updates).values() if isinstance(cls, type) and isinstance(getattr(cls, "kind", None), str)]
    assert len(types) >= 19
    assert [t for t in types if f"| `{t}` |" not in readme] == []
