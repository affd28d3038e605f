"""`earshot redact`: standard input's lines, redacted, one line out per line in, flushed as they go."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO


def redact_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "earshot.server", "redact", *args]


def test_lines_come_back_one_for_one_and_each_as_soon_as_it_is_read():
    lines = [
        "my card number is four one one one one one one one one one one one one one one one",
        "",
        "My name is Mark Rivera and my email is mark.rivera@gmail.com.",
        "that's forty nine dollars ninety nine a month",
    ]
    expected = ["my card number is [CARD]", "", "My name is [NAME] and my email is [EMAIL].", lines[3]]
    process = subprocess.Popen(redact_command(), cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, bufsize=1)
    try:
        for line, want in zip(lines, expected):
            # One line in, its answer out, before the next is written: the command flushes per line.
            process.stdin.write(line + "\n")
            process.stdin.flush()
            assert process.stdout.readline() == want + "\n"
        process.stdin.close()
        assert process.stdout.read() == ""
        assert process.wait(timeout=30) == 0
    finally:
        process.kill()
        process.wait()
        process.stdout.close()
        process.stderr.close()


def test_kinds_choose_what_is_redacted():
    text = "My name is Mark Rivera, call me on (415) 555-0132.\n"
    phone_only = subprocess.run(redact_command("--kinds", "phone"), input=text, cwd=REPO, capture_output=True,
                                text=True, timeout=120)
    assert phone_only.returncode == 0, phone_only.stderr
    assert phone_only.stdout == "My name is Mark Rivera, call me on [PHONE].\n"
    nothing = subprocess.run(redact_command("--kinds", "none"), input=text, cwd=REPO, capture_output=True,
                             text=True, timeout=60)
    assert (nothing.returncode, nothing.stdout) == (0, text)


def test_an_unknown_kind_is_a_usage_error():
    result = subprocess.run(redact_command("--kinds", "card,passport"), input="x\n", cwd=REPO, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2
    assert "unknown redaction kinds passport" in result.stderr
    assert result.stdout == ""
