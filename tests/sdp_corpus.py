"""Malformed SDP offers, each made from one real offer of a headless aiortc peer (audio + data channel).

`malformed_offers(real)` maps a case name to the request body to post to
/api/sessions/{id}/offer: a dict (sent as JSON) or bytes (sent as they are, for
bodies JSON cannot carry). Every case must be refused with a JSON 4xx and a code,
except those in MAY_CONNECT: a lenient reading of them is a usable offer, so a 200
answer is right too.
"""

from __future__ import annotations

import json
import re
from typing import Callable, Union

Body = Union[dict, bytes]
CRLF = "\r\n"
MEDIA_SECTIONS = 610  # the count the probe sent and the server accepted
# Offers a lenient reader may take: other line endings, unknown or unused lines and values.
MAY_CONNECT = {
    "lf_only", "crlf_lf_mixed", "cr_only", "audio_recvonly", "audio_inactive", "unknown_extmap",
    "trailing_garbage_lines", "huge_attribute_line", "many_attribute_lines", "bad_connection_line",
    "huge_max_message_size", "session_lines_twice", "session_name_lone_surrogate",
}


def split_sections(sdp: str) -> tuple[list[str], list[list[str]]]:
    """The session-level lines, and each media section's lines (its m= line first)."""
    session: list[str] = []
    media: list[list[str]] = []
    for line in sdp.split(CRLF):
        if not line:
            continue
        if line.startswith("m="):
            media.append([line])
        elif media:
            media[-1].append(line)
        else:
            session.append(line)
    return session, media


def join(session: list[str], media: list[list[str]], sep: str = CRLF) -> str:
    return sep.join(session + [line for section in media for line in section]) + sep


def _edit_lines(sdp: str, edit: Callable[[str], Union[str, None]]) -> str:
    """Each line through `edit`: a string replaces it, None drops it."""
    lines = [edit(line) for line in sdp.split(CRLF) if line]
    return CRLF.join(line for line in lines if line is not None) + CRLF


def _drop(prefixes: tuple[str, ...]) -> Callable[[str], Union[str, None]]:
    return lambda line: None if line.startswith(prefixes) else line


def _sub(pattern: str, replacement: str) -> Callable[[str], str]:
    return lambda line: re.sub(pattern, replacement, line)


def _many_audio_sections(real: str, count: int) -> str:
    session, media = split_sections(real)
    audio = media[0]
    shared = [line for line in audio if line.startswith(("a=ice-ufrag", "a=ice-pwd", "a=fingerprint:sha-256", "a=setup"))]
    sections = [[audio[0].split(" ")[0] + " 9 UDP/TLS/RTP/SAVPF 96", f"a=mid:{i}", "a=rtpmap:96 opus/48000/2"] for i in range(count)]
    session = [line for line in session if not line.startswith("a=group")] + ["c=IN IP4 127.0.0.1", *shared]
    return join(session, [*sections, media[1]])


def malformed_offers(real: str) -> dict[str, Body]:
    session, media = split_sections(real)
    audio, data = media
    sdp: dict[str, str] = {
        "empty": "",
        "truncated_in_header": real[:40],
        "truncated_half": real[: len(real) // 2],
        "truncated_mid_line": real[: real.index("a=fingerprint") + 30],
        "no_media_sections": join(session, []),
        f"audio_sections_{MEDIA_SECTIONS}": _many_audio_sections(real, MEDIA_SECTIONS),
        "no_fingerprint": _edit_lines(real, _drop(("a=fingerprint",))),
        "garbage_fingerprint": _edit_lines(real, _sub(r"^a=fingerprint:(\S+) .*", r"a=fingerprint:\1 ZZ:not:a:hash")),
        "unknown_fingerprint_algorithm": _edit_lines(real, _sub(r"^a=fingerprint:\S+ ", "a=fingerprint:md7 ")),
        "no_ice_credentials": _edit_lines(real, _drop(("a=ice-ufrag", "a=ice-pwd"))),
        "unknown_codec_only": _edit_lines(
            real,
            lambda line: (
                re.sub(r"(UDP/TLS/RTP/SAVPF) .*", r"\1 103", line) if line.startswith("m=audio")
                else "a=rtpmap:103 ISAC/16000" if line.startswith("a=rtpmap:96")
                else None if line.startswith("a=rtpmap") else line
            ),
        ),
        "payload_type_without_rtpmap": _edit_lines(real, _drop(("a=rtpmap",))),
        "payload_type_out_of_range": _edit_lines(real, _sub(r"\b96\b", "300")),
        "bad_rtpmap_clock": _edit_lines(real, _sub(r"opus/48000/2", "opus/abc/2")),
        "video_only": join(session, [[audio[0].replace("m=audio", "m=video"), *audio[1:]], data]),
        "data_channel_only": join([line.replace(" 0 1", " 1") for line in session], [data]),
        "audio_only": join([line.replace(" 0 1", " 0") for line in session], [audio]),
        "audio_port_zero": join(session, [[re.sub(r"^m=audio \d+", "m=audio 0", audio[0]), *audio[1:]], data]),
        "huge_attribute_line": join(session, [[*audio, "a=x-huge:" + "A" * 50_000], data]),
        "many_attribute_lines": join(session, [[*audio, *["a=x-many:1"] * 3000], data]),
        "huge_mid": _edit_lines(real, _sub(r"^a=mid:0$", "a=mid:" + "m" * 5000)).replace("BUNDLE 0 1", "BUNDLE " + "m" * 5000 + " 1"),
        "duplicate_mids": _edit_lines(real, _sub(r"^a=mid:1$", "a=mid:0")).replace("BUNDLE 0 1", "BUNDLE 0 0"),
        "bundle_unknown_mid": real.replace("a=group:BUNDLE 0 1", "a=group:BUNDLE 0 1 7"),
        "audio_mid_not_in_bundle": _edit_lines(real, _sub(r"^a=mid:0$", "a=mid:9")),
        "data_mid_not_in_bundle": _edit_lines(real, _sub(r"^a=mid:1$", "a=mid:9")),
        "bad_m_line": _edit_lines(real, _sub(r"^m=audio .*", "m=audio x y z")),
        "bad_connection_line": _edit_lines(real, _sub(r"^c=IN IP4 .*", "c=IN IP4 not-an-address")),
        "bad_setup_role": _edit_lines(real, _sub(r"^a=setup:.*", "a=setup:sideways")),
        "bad_sctp_port": _edit_lines(real, _sub(r"^a=sctp-port:.*", "a=sctp-port:-1")),
        "huge_max_message_size": _edit_lines(real, _sub(r"^a=max-message-size:.*", "a=max-message-size:" + "9" * 40)),
        "bad_candidate": _edit_lines(real, _sub(r"^a=candidate:.*", "a=candidate:garbage 1 udp x y z typ none")),
        "bad_ssrc": _edit_lines(real, _sub(r"^a=ssrc:\d+", "a=ssrc:abc")),
        "nul_bytes": real.replace("a=mid:0", "a=mid:\x000"),
        "session_name_lone_surrogate": real.replace("s=-", "s=\udc80"),
        "cr_only": real.replace(CRLF, "\r"),
        "lf_only": real.replace(CRLF, "\n"),
        "crlf_lf_mixed": "".join(line + ("\r\n" if i % 2 else "\n") for i, line in enumerate(real.split(CRLF)[:-1])),
        "audio_recvonly": real.replace("a=sendonly", "a=recvonly"),
        "audio_inactive": real.replace("a=sendonly", "a=inactive"),
        "unknown_extmap": _edit_lines(real, _sub(r"^a=extmap:1 .*", "a=extmap:14 urn:example:unknown")),
        "trailing_garbage_lines": real + "x=1\r\nzz\r\n",
        "session_lines_twice": join(session + session, media),
    }
    bodies: dict[str, Body] = {name: {"sdp": text, "type": "offer"} for name, text in sdp.items()}
    bodies["not_utf8"] = json.dumps({"sdp": "@", "type": "offer"}).encode().replace(b"@", real.encode() + b"\xff\xfe")
    bodies["sdp_not_a_string"] = {"sdp": split_sections(real)[1], "type": "offer"}
    return bodies
