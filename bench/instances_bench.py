"""Two Earshot instances on one Redis: what the hop costs, how fast a lost call resumes, and capacity.

    python -m bench.instances_bench [--quick]   -> bench/results/instances.json and instances.png

1. The hop: an offer answered by the instance it reached, against one sent on
   to the instance its session was placed on (server/forwarding.py).
2. Losing an instance: a caller talks to a; a is SIGKILLed; the same session
   connects to b. Measured: the kill -> the new call's data channel open (b
   takes it only once a's hold lapses: --instance-ttl-s), and finals lost or
   doubled (stored against received, by sequence number).
3. Draining (--drain-grace-s 3): SIGTERM -> a's /healthz/ready answers 503, -> the live
   call's `server_draining` notice, -> the session live again on b.
4. Capacity: `earshot loadtest` levels with the SLO "p95 final_latency <= 1.5"
   against one instance, then against two (through a; placement spreads).
   On one 2-core machine both instances share the same cores (each is given
   one: --asr-workers 1 --asr-threads 1, as two 1-CPU pods), so the second
   figure says what splitting one machine costs, not what a second machine adds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
from aiortc import RTCPeerConnection

from bench.common import DEFAULT_CORPUS, RESULTS_DIR, machine_info, progress, utc_timestamp, write_results
from earshot.loadtest.caller import HeadlessCaller
from earshot.loadtest.server_process import ServerProcess, start_server, wait_ready
from earshot.models.audio import read_audio
from earshot.server.at_rest import Sealer
from earshot.server.ice import restrict_ice_to_loopback, rtc_configuration
from earshot.server.protocol import EVENTS_CHANNEL
from earshot.server.redis_server import PrivateRedis
from earshot.server.settings import Settings

TTL_S = 2.0
CLIPS = ["utterances/LJ001-0002.wav", "utterances/LJ001-0008.wav", "utterances/LJ001-0013.wav", "utterances/LJ001-0011.wav"]
SLO = "p95 final_latency <= 1.5"
PER_INSTANCE_CORE = ("--asr-workers", "1", "--asr-threads", "1")


def start_instances(
    started: list[ServerProcess], redis_url: str, root: Path, names: tuple[str, ...], *extra: str
) -> list[ServerProcess]:
    """Instances `names` of one group, added to `started` (the run stops them all at its end, whatever happens)."""
    keys = root / "storage.keys"
    if not keys.exists():
        Sealer.from_settings(replace(Settings(), storage_key_file=str(keys)))
    servers = [
        start_server(redis_url, root / name, wait=False, extra_args=(
            "--instance-group", "bench", "--instance-id", name, "--instance-ttl-s", str(TTL_S),
            "--storage-key-file", str(keys), "--drain-grace-s", "3", *extra,
        ))
        for name in names
    ]
    started.extend(servers)
    for server in servers:
        wait_ready(server)
    return servers


async def an_offer() -> str:
    pc = RTCPeerConnection(rtc_configuration())
    pc.addTransceiver("audio", direction="sendrecv")
    pc.createDataChannel(EVENTS_CHANNEL)
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


async def offer_times(a: ServerProcess, b: ServerProcess, rounds: int) -> dict[str, list[float]]:
    """Each round: a session made on a (placed there), offered to a directly, and one offered through b."""
    times: dict[str, list[float]] = {"direct_ms": [], "hop_ms": []}
    async with httpx.AsyncClient(timeout=30) as http:
        for _ in range(rounds):
            for kind, entry in (("direct_ms", a), ("hop_ms", b)):
                made = (await http.post(a.base_url + "/api/sessions", json={"role": "software_engineer"})).json()
                auth = {"Authorization": f"Bearer {made['token']}"}
                body = {"sdp": await an_offer(), "type": "offer"}
                started = time.perf_counter()
                answer = await http.post(entry.base_url + f"/api/sessions/{made['session_id']}/offer", json=body, headers=auth)
                times[kind].append((time.perf_counter() - started) * 1000)
                assert answer.status_code == 200, answer.text
                await http.delete(a.base_url + f"/api/sessions/{made['session_id']}", headers=auth)
    return times


async def failover_once(a: ServerProcess, b: ServerProcess, pcm: bytes, http_b: str) -> dict[str, Any]:
    first = HeadlessCaller(a.base_url, pcm)
    await first.connect()
    await first.wait_until(lambda c: len(c.of_type("final")) >= 2, timeout=40)
    killed_at = time.monotonic()
    a.kill()
    before = first.of_type("final")
    await first.hangup(end_session=False)
    again = HeadlessCaller(http_b, pcm, session_id=first.session_id, token=first.token)
    await again.connect()
    resumed_s = time.monotonic() - killed_at
    await again.wait_until(lambda c: len(c.of_type("final")) >= 1, timeout=40)
    after = again.of_type("final")
    await asyncio.sleep(1.0)
    stored = (await again.session_state())["finals"]
    await again.hangup()
    received = [f["seq"] for f in [*before, *after]]
    return {
        "resume_s": round(resumed_s, 3),
        "waited": [code for code, _ in again.offer_waits],
        "finals_stored": len(stored),
        "lost": len({f["seq"] for f in stored} - set(received) - set(range(len(before) + 1, len(stored) + 1))),
        "doubled": len(received) - len(set(received)),
        "stored_in_order": [f["seq"] for f in stored] == list(range(1, len(stored) + 1)),
    }


async def drain_once(a: ServerProcess, b: ServerProcess, pcm: bytes) -> dict[str, Any]:
    """A live call on a; SIGTERM: when ready goes false, when the call is closed with its notice, and
    when the same session is live again on b."""
    caller = HeadlessCaller(a.base_url, pcm * 3)
    await caller.connect()
    await caller.wait_until(lambda c: len(c.of_type("final")) >= 1, timeout=40)
    started = time.monotonic()
    a.process.send_signal(signal.SIGTERM)
    async with httpx.AsyncClient(timeout=2) as http:
        while (await http.get(a.base_url + "/healthz/ready")).status_code == 200:
            await asyncio.sleep(0.005)
    ready_false_s = time.monotonic() - started
    await caller.wait_until(lambda c: any(e["code"] == "server_draining" for e in c.of_type("error")), timeout=60)
    notice_s = time.monotonic() - started
    await caller.hangup(end_session=False)
    again = HeadlessCaller(b.base_url, pcm, session_id=caller.session_id, token=caller.token)
    await again.connect()
    resumed_s = time.monotonic() - started
    await again.hangup()
    return {"ready_false_ms": round(ready_false_s * 1000, 1), "notice_s": round(notice_s, 3),
            "resumed_s": round(resumed_s, 3), "waited": [code for code, _ in again.offer_waits]}


def load_levels(url: str, levels: str, duration: float, out: Path) -> list[dict[str, Any]]:
    result = subprocess.run(
        [sys.executable, "-m", "earshot.server", "loadtest", "--url", url, "--sessions", levels, "--duration", str(duration),
         "--slo", SLO, "--seed", "7", "--out", str(out)],
        capture_output=True, text=True, timeout=3600,
    )
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-3000:])
    report = json.loads((out / "loadtest.json").read_text())
    return [
        {
            "sessions": level["sessions"],
            "completed": level["calls"]["completed"],
            "errors": level["errors"],
            "instances": level.get("instances", {}),
            "final_p50_s": level["latency"]["final_latency_s"]["p50"],
            "final_p95_s": level["latency"]["final_latency_s"]["p95"],
            "first_partial_p95_s": level["latency"]["first_partial_s"]["p95"],
            "meets_slo": level["meets_slo"],
        }
        for level in report["levels"]
    ]


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "n": len(values), "p50": round(statistics.median(ordered), 1),
        "p95": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 1), "mean": round(statistics.fmean(ordered), 1),
    }


async def run(quick: bool) -> dict[str, Any]:
    restrict_ice_to_loopback()
    pcm = b"".join(read_audio(DEFAULT_CORPUS / clip) + bytes(int(1.2 * 16000) * 2) for clip in CLIPS)
    levels, duration, rounds, failovers = ("4,8", 20.0, 5, 1) if quick else ("4,8,12,16", 45.0, 20, 3)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        started: list[ServerProcess] = []
        redis = PrivateRedis(root / "redis")
        url = redis.start()
        report: dict[str, Any] = {"bench": "instances", "started_at": utc_timestamp(), "machine": machine_info(),
                                  "instance_ttl_s": TTL_S, "slo": SLO}
        try:
            a, b = start_instances(started, url, root, ("a", "b"))
            progress("offers: direct and through a hop")
            report["offer"] = {k: summary(v) for k, v in (await offer_times(a, b, rounds)).items()}
            runs = []
            for i in range(failovers):
                progress(f"failover {i + 1}/{failovers}")
                runs.append(await failover_once(a, b, pcm, b.base_url))
                (a,) = start_instances(started, url, root, ("a",))
            report["failover"] = {"runs": runs, "resume_s": summary([r["resume_s"] * 1000 for r in runs])}
            progress("drain")
            report["drain"] = await drain_once(a, b, pcm)
            a.process.wait(timeout=60)
            b.stop()
            progress(f"load: one instance, levels {levels}")
            (solo,) = start_instances(started, url, root, ("solo",), "--instance-group", "solo")
            report["load_one"] = load_levels(solo.base_url, levels, duration, root / "load-one")
            solo.stop()
            progress(f"load: two instances through a, levels {levels}")
            # Each instance gets one of the two cores, as two 1-CPU pods would.
            a, b = start_instances(started, url, root, ("a", "b"), *PER_INSTANCE_CORE)
            report["load_two"] = load_levels(a.base_url, levels, duration, root / "load-two")
            a.stop()
            b.stop()
        finally:
            for server in started:
                server.stop()  # those stopped or killed already: nothing to do
            redis.stop()
    report["config"] = {"levels": levels, "duration_s": duration, "offer_rounds": rounds, "failovers": failovers,
                        "two_instances_each": " ".join(PER_INSTANCE_CORE)}
    report["finished_at"] = utc_timestamp()
    return report


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for key, label in (("load_one", "one instance"), ("load_two", "two instances (placement + hop)")):
        rows = report.get(key, [])
        ax.plot([r["sessions"] for r in rows], [r["final_p95_s"] for r in rows], marker="o", label=label)
    ax.axhline(1.5, color="tab:red", linestyle="--", label="SLO p95 1.5 s")
    ax.set(title="Final latency p95 by concurrent sessions (2 cores)", xlabel="concurrent sessions", ylabel="seconds")
    ax.legend()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and levels")
    args = parser.parse_args()
    report = asyncio.run(run(args.quick))
    path = write_results(RESULTS_DIR, "instances", report)
    plot(report, RESULTS_DIR / "instances.png")
    print(json.dumps({k: v for k, v in report.items() if k != "machine"}, indent=2))
    progress(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
