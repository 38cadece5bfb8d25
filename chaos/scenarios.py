"""The chaos matrix: each scenario injects one fault into a running pipeline and reports one
row (worker kills, API outages, a wrong key, Redis restarts, power loss and a full memory,
hostile entries, duplicates, a slow API, a shutdown under load).

Every scenario runs in a fresh `Rig` (its own Redis server, sandbox and pods) and must keep
the promise: nothing lost, no job with two outcomes, and double sends only from requests
that were in flight when a process was killed or Redis lost power.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from chaos.rig import Rig, Row, code, rig, sms, wait_until
from tasks.circuit_state import read_state
from tasks.keys import CONSUMER_GROUP, as_text


@dataclass(frozen=True)
class Scale:
    sms: int
    codes: int
    outage_s: float  # "API down 30 s"
    long_outage_s: float  # "API down 10 min": longer than a code's MAX_AGE
    code_max_age_s: float
    request_s: float  # how long the API takes when a request must be in flight


#: The issue's figures: 20,000 SMS + 500 FLASHCALL a scenario, a 30 s and a 10 min outage.
FULL = Scale(sms=20_000, codes=500, outage_s=30, long_outage_s=600, code_max_age_s=300, request_s=3)
#: The same scenarios small enough for CI.
FAST = Scale(sms=2000, codes=100, outage_s=4, long_outage_s=8, code_max_age_s=3, request_s=1)


def campaign(scale: Scale) -> list[dict[str, Any]]:
    return [sms(i) for i in range(scale.sms)] + [code(i) for i in range(scale.codes)]


#: Small SMS batches on a slow API, so a fault lands while most of the work is in flight.
BUSY_POD = {"SMS_BATCH_SIZE": "100"}
BUSY_API = ["--faults", '{"latencyMs": 300}']


def _some_sent(world: Rig, at_least: int = 1) -> None:
    wait_until(lambda: world.client.xlen(world.keys.results) >= at_least, 60, "first outcomes")


def _a_request_in_flight(world: Rig) -> None:
    before = world.sandbox.total_requests()
    wait_until(lambda: world.sandbox.total_requests() > before, 60, "a request in flight")


def _pods_alive(world: Rig) -> str:
    dead = [i for i, pod in enumerate(world.pods) if not pod.alive and pod.process.returncode]
    return "every pod stayed alive" if not dead else f"pods that died: {dead}"


def kill_pod_mid_batch(workdir: Path, scale: Scale) -> Row:
    with rig(workdir, sandbox_args=["--faults", '{"latencyMs": 300}']) as world:
        world.enqueue(campaign(scale))
        for _ in range(3):
            pod = world.pod()
            _a_request_in_flight(world)
            pod.kill()
            world.a_kill()
        started = time.monotonic()
        world.pod()
        return world.row("SIGKILL of a pod mid-batch ×3", world.wait_drained(started))


def _api_down(workdir: Path, scale: Scale, seconds: float, name: str, **env: str) -> Row:
    with rig(workdir, sandbox_args=BUSY_API, pod_env={**BUSY_POD, **env}) as world:
        world.pod()
        world.enqueue(campaign(scale))
        _some_sent(world)
        world.sandbox.stop()
        down_until = time.monotonic() + seconds
        late_codes = [code(scale.codes + i) for i in range(scale.codes // 5)]
        world.enqueue(late_codes)  # codes asked for during the outage
        time.sleep(max(0.0, down_until - time.monotonic()))
        world.sandbox.start()
        started = time.monotonic()
        drain = world.wait_drained(started)
        return world.row(name, drain, _pods_alive(world))


def api_down_short(workdir: Path, scale: Scale) -> Row:
    return _api_down(workdir, scale, scale.outage_s, f"API down {scale.outage_s:g} s")


def api_down_long_with_codes(workdir: Path, scale: Scale) -> Row:
    name = (
        f"API down {scale.long_outage_s:g} s with codes "
        f"(FLASHCALL_MAX_AGE_S={scale.code_max_age_s:g})"
    )
    row = _api_down(
        workdir,
        scale,
        scale.long_outage_s,
        name,
        FLASHCALL_MAX_AGE_S=str(scale.code_max_age_s),
    )
    row.notes = f"{row.notes}; only codes may expire"
    return row


def flaky_api(workdir: Path, scale: Scale) -> Row:
    faults = '{"status": {"status": 503, "fraction": 0.3}}'
    with rig(workdir, sandbox_args=["--faults", faults]) as world:
        world.pod()
        started = time.monotonic()
        world.enqueue(campaign(scale))
        return world.row("30 % of requests answered 503", world.wait_drained(started))


def wrong_token_then_fixed(workdir: Path, scale: Scale) -> Row:
    with rig(workdir) as world:
        wrong = world.pod(REVICOM_API_TOKEN="not-the-token")
        world.enqueue(campaign(scale))
        wait_until(lambda: read_state(world.client, world.keys.circuit).open, 60, "circuit")
        time.sleep(3)  # the campaign waits; probes keep failing
        refused = world.sandbox.total_requests()
        outcomes_while_wrong = int(world.client.xlen(world.keys.results))
        wrong.terminate()
        started = time.monotonic()
        world.pod()  # redeployed with the right token
        drain = world.wait_drained(started)
        notes = f"{refused} requests refused, {outcomes_while_wrong} outcomes meanwhile"
        return world.row("401 for a whole campaign, then the token fixed", drain, notes)


def redis_restart(workdir: Path, scale: Scale) -> Row:
    aof = {"appendonly": "yes", "appendfsync": "everysec"}
    with rig(workdir, redis_options=aof, sandbox_args=BUSY_API, pod_env=BUSY_POD) as world:
        world.pod()
        world.enqueue(campaign(scale))
        _some_sent(world)
        world.redis.restart("shutdown", down_s=3)
        started = time.monotonic()
        drain = world.wait_drained(started)
        return world.row("Redis restarted (3 s down)", drain, _pods_alive(world))


def redis_power_loss(workdir: Path, scale: Scale) -> Row:
    """`appendfsync everysec` loses up to its last second in a power cut: Redis is killed
    with that second of its AOF cut while a request (3 s) is in flight."""
    aof = {"appendonly": "yes", "appendfsync": "everysec", "aof-load-truncated": "yes"}
    faults = orjson.dumps({"latencyMs": int(scale.request_s * 1000)}).decode()
    with rig(workdir, redis_options=aof, sandbox_args=["--faults", faults]) as world:
        world.enqueue(campaign(scale))
        time.sleep(1.5)  # the jobs themselves are on disk: the cut takes only the workers' second
        sizes = _AofSizes(world.redis.directory)
        before = world.sandbox.total_requests()
        world.pod()
        wait_until(lambda: world.sandbox.total_requests() > before, 60, "a request in flight")
        time.sleep(scale.request_s / 2)  # in flight; the claims are in the last second
        cut = sizes.cut_last(seconds=1.0, kill=lambda: world.redis.stop("kill"))
        world.a_kill()
        world.redis.start()
        started = time.monotonic()
        drain = world.wait_drained(started)
        notes = f"{cut} AOF bytes cut; {_pods_alive(world)}"
        name = f"Redis power loss (1 s of AOF cut) mid-request ({scale.request_s:g} s)"
        return world.row(name, drain, notes)


class _AofSizes:
    """Samples the size of the AOF being appended to, so its last second can be cut."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._samples: list[tuple[float, Path, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _current(self) -> Path:
        incremental = sorted(
            self._directory.rglob("*.incr.aof"), key=lambda p: (p.stat().st_mtime, p.name)
        )
        return incremental[-1] if incremental else next(self._directory.rglob("*.aof"))

    def _sample(self) -> None:
        while not self._stop.is_set():
            path = self._current()
            self._samples.append((time.monotonic(), path, path.stat().st_size))
            time.sleep(0.02)

    def cut_last(self, seconds: float, kill: Callable[[], None]) -> int:
        kill()
        self._stop.set()
        self._thread.join()
        now = time.monotonic()
        _, path, size = next(s for s in reversed(self._samples) if s[0] <= now - seconds)
        length = path.stat().st_size
        with path.open("r+b") as aof:
            aof.truncate(size)
        return length - size


def redis_full(workdir: Path, scale: Scale) -> Row:
    with rig(workdir, sandbox_args=BUSY_API, pod_env=BUSY_POD) as world:
        world.pod()
        world.enqueue(campaign(scale))
        _some_sent(world)
        used = int(world.client.info("memory")["used_memory"])
        world.client.config_set("maxmemory", used)
        time.sleep(5)  # every write refused: OOM
        logs = "".join(p.log.read_text(errors="replace") for p in world.pods)
        oom_seen = "used memory > 'maxmemory'" in logs
        world.client.config_set("maxmemory", 0)
        started = time.monotonic()
        drain = world.wait_drained(started)
        notes = f"writes refused (OOM) seen by the workers: {oom_seen}; {_pods_alive(world)}"
        return world.row("Redis at maxmemory for 5 s", drain, notes)


def poison_and_oversized(workdir: Path, scale: Scale) -> Row:
    with rig(workdir) as world:
        stream = world.keys.jobs("SMS")
        world.client.xgroup_create(stream, CONSUMER_GROUP, id="0", mkstream=True)
        # A poison job: it killed whoever took it 16 times already (a dead holder has it).
        poison = sms(scale.sms)
        world.enqueue([poison])
        world.client.xreadgroup(CONSUMER_GROUP, "r-dead", {stream: ">"}, count=1)
        entries: Any = world.client.xrange(stream)
        world.client.xclaim(stream, CONSUMER_GROUP, "r-dead", 0, [entries[0][0]], retrycount=16)
        world.enqueue([sms(i) for i in range(scale.sms)])
        message = sms(0)["message"]
        hostile: list[tuple[bytes, str | None]] = [  # the entry, and its jobId if readable
            (b"{not json", None),
            (
                orjson.dumps({"jobId": "huge", "message": {**message, "content": "x" * 200_000}}),
                None,
            ),
            (
                orjson.dumps({"jobId": "typed", "message": {**message, "channelType": ["SMS"]}}),
                "typed",
            ),
            (b'{"jobId": "surrogate", "message": {"content": "\\ud83d"}}', None),
            (orjson.dumps([1, 2]), None),
        ]
        for raw, job_id in hostile:
            entry_id = as_text(world.client.xadd(stream, {"job": raw}))
            world.job_ids.add(job_id or entry_id)
        started = time.monotonic()
        world.pod()
        drain = world.wait_drained(started)
        return world.row(
            "poison and oversized entries", drain, "the poison job failed, dead-lettered"
        )


def duplicate_job_ids(workdir: Path, scale: Scale) -> Row:
    with rig(workdir) as world:
        jobs = campaign(scale)
        world.pod()
        started = time.monotonic()
        world.enqueue(jobs + jobs[::10])
        return world.row("10 % duplicate jobIds", world.wait_drained(started))


def slow_api_codes_in_a_campaign(workdir: Path, scale: Scale) -> Row:
    with rig(workdir, sandbox_args=["--faults", '{"latencyMs": 2000}']) as world:
        world.pod()
        started = time.monotonic()
        world.enqueue([sms(i) for i in range(scale.sms)])
        sent_at: dict[str, float] = {}
        for i in range(min(scale.codes, 60)):
            job = code(i)
            sent_at[job["message"]["destination"]] = time.time()
            world.enqueue([job])
            time.sleep(0.1)
        drain = world.wait_drained(started)
        world.sandbox.collect()
        delays = sorted(
            r["receivedAt"] - sent_at[r["message"]["destination"]]
            for r in world.sandbox.received
            if r["message"]["destination"] in sent_at
        )
        p50 = statistics.median(delays)
        p99 = delays[min(len(delays) - 1, int(len(delays) * 0.99))]
        notes = f"codes enqueue→API p50 {p50:.2f} s, p99 {p99:.2f} s (API takes 2 s to answer)"
        return world.row("a 2 s API, codes during a campaign", drain, notes)


def sigterm_during_backlog(workdir: Path, scale: Scale) -> Row:
    with rig(workdir, sandbox_args=["--faults", '{"latencyMs": 200}']) as world:
        world.enqueue(campaign(scale))
        pod = world.pod()
        _some_sent(world, at_least=100)
        stopping = time.monotonic()
        exit_code = pod.terminate()
        stop_s = time.monotonic() - stopping
        started = time.monotonic()
        world.pod()
        drain = world.wait_drained(started)
        notes = f"the pod exited {exit_code} in {stop_s:.1f} s"
        return world.row("SIGTERM during a backlog", drain, notes)


#: The sandbox delivers in a second and calls back with every fault: most statuses come by
#: callback, the dropped ones by lookups 5 s after the 201.
DELIVERY = {
    "delivered": 0.85,
    "undelivered": 0.1,
    "unsent": 0.05,
    "sentAfterMs": 200,
    "finalAfterMs": 1000,
    "duplicateFraction": 0.05,
    "reorderFraction": 0.05,
    "dropFraction": 0.05,
    "retries": 20,
    "retryDelayMs": 500,
}
LOOKUPS = {"STATUS_POLL_AFTER_S": "5", "STATUS_POLL_MAX_INTERVAL_S": "5", "STATUS_POLL_RPS": "50"}


def callbacks_through_kills(workdir: Path, scale: Scale) -> Row:
    """Delivery tracking under faults: two pods killed mid-batch, and the receiver down for
    3 s; every accepted message must still end with exactly one final status."""
    args = ["--delivery", orjson.dumps(DELIVERY).decode(), *BUSY_API]
    with rig(workdir, sandbox_args=args, pod_env={**BUSY_POD, **LOOKUPS}) as world:
        env = {"CALLBACK_URL": world.receiver()}
        world.enqueue(campaign(scale))
        for _ in range(2):
            pod = world.pod(**env)
            _a_request_in_flight(world)
            pod.kill()
            world.a_kill()
        world.stop_receiver()
        world.pod(**env)
        time.sleep(3)
        world.receiver()
        started = time.monotonic()
        drain = world.wait_drained(started)
        accepted = world.accepted_messages()
        wait_until(
            lambda: accepted <= {e["jobId"] for e in world.final_statuses()},
            120,
            f"{len(accepted)} final statuses",
        )
        time.sleep(2)  # a second final status would show now
        entries = world.final_statuses()
        finals = Counter(e["jobId"] for e in entries)
        by_source = Counter(e["source"] for e in entries)
        row = world.row(
            "callbacks through 2 pod kills and a receiver restart",
            drain,
            f"{len(accepted)} accepted: final statuses by callback {by_source['callback']}, "
            f"by lookup {by_source['poll']}",
        )
        row.finals_wrong = sum(1 for j in accepted if finals[j] != 1) + sum(
            1 for j in finals if j not in accepted
        )
        return row


SCENARIOS: dict[str, Callable[[Path, Scale], Row]] = {
    "kill": kill_pod_mid_batch,
    "outage": api_down_short,
    "long-outage": api_down_long_with_codes,
    "flaky": flaky_api,
    "wrong-token": wrong_token_then_fixed,
    "redis-restart": redis_restart,
    "power-loss": redis_power_loss,
    "redis-full": redis_full,
    "poison": poison_and_oversized,
    "duplicates": duplicate_job_ids,
    "slow-api": slow_api_codes_in_a_campaign,
    "sigterm": sigterm_during_backlog,
    "callbacks": callbacks_through_kills,
}
