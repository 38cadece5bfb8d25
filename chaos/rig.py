"""One chaos scenario's world, all on 127.0.0.1: its own Redis server, its own sandbox API,
worker pods as real processes, and a producer; and the ledger of what was sent and published.

Every job of a scenario has a destination of its own, so the sandbox's record of received
messages tells how often each job reached the API.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import redis

from devenv.processes import free_port, receiver_process, sandbox_process
from devenv.redis_server import RedisServer
from tasks.contract import ContractContext
from tasks.keys import OUTCOME_FIELD, STATUS_FIELD, Keys
from tasks.producer import Enqueued, Producer

SCRIPT = str(Path(sys.executable).with_name("revicom-dispatch"))
SANDBOX_TOKEN = "chaos-token"

#: Settings of every pod: fast recovery, so a scenario ends in seconds, not minutes.
POD_ENV = {
    "LEASE_MS": "2000",
    "OTP_LEASE_MS": "2000",
    "RETRY_BACKOFF_MS": "100",
    "RETRY_BACKOFF_MAX_MS": "1000",
    "RETRY_MAX_ATTEMPTS": "10",
    "RETRY_MAX_SECONDS": "30",
    "CIRCUIT_FAILURES": "5",
    "CIRCUIT_COOLDOWN_S": "1",
    "CIRCUIT_COOLDOWN_MAX_S": "4",
    "SEND_TIMEOUT_S": "15",
    "SHUTDOWN_GRACE_S": "20",
    "METRICS_PORT": "0",
}


def wait_until(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} within {timeout_s} s")
        time.sleep(0.05)


def sms(index: int) -> dict[str, Any]:
    return {
        "jobId": f"sms-{index}",
        "message": {
            "channelType": "SMS",
            "senderName": "CHAOS",
            "destination": f"1408{index:07d}",
            "content": "Your order has shipped",
        },
    }


def code(index: int) -> dict[str, Any]:
    return {
        "jobId": f"code-{index}",
        "message": {
            "channelType": "FLASHCALL",
            "senderName": "chaos",
            "destination": f"1999{index:07d}",
            "content": f"{index % 10000:04d}",
        },
    }


class Pod:
    """`revicom-dispatch worker` (an OTP and a bulk node) in its own session."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log
        self._sink = log.open("ab")
        self.process = subprocess.Popen(
            [SCRIPT, "worker", "--loglevel", "INFO", "--without-mingle", "--without-gossip"],
            env=env,
            stdout=self._sink,
            stderr=self._sink,
            start_new_session=True,
        )
        wait_until(
            lambda: self.log.read_bytes().count(b" ready.") >= 2 or not self.alive, 60, "a pod"
        )
        if not self.alive:
            raise RuntimeError(f"the pod exited at start; see {log}")

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        self._sink.close()

    def terminate(self, timeout_s: float = 120) -> int:
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=timeout_s)
        self._sink.close()
        return code


class Sandbox:
    """The API, on a fixed port so it can be stopped and started again; what it received
    across its lives is kept."""

    def __init__(self, workdir: Path, args: list[str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._args = ["--token", SANDBOX_TOKEN, *args]
        self._log = workdir / "sandbox.log"
        self._stack = contextlib.ExitStack()
        self.received: list[dict[str, Any]] = []
        self.requests_before: int = 0  # requests of earlier lives
        self._offset = 0  # what this life's received list has been read up to

    def start(self) -> None:
        self._stack.enter_context(sandbox_process(self._args, port=self.port, log=self._log))

    def stop(self) -> None:
        self.collect()
        self.requests_before += self.requests()
        self._stack.close()
        self._stack = contextlib.ExitStack()
        self._offset = 0

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)

    def faults(self, **faults: Any) -> None:
        with self.client() as client:
            client.put("/_sandbox/faults", json=faults).raise_for_status()

    def requests(self) -> int:
        with self.client() as client:
            return int(client.get("/_sandbox/stats").json()["requests"])

    def total_requests(self) -> int:
        return self.requests_before + self.requests()

    def collect(self) -> None:
        """Fetch what this life of the sandbox received since the last call."""
        with self.client() as client:
            while True:
                page = client.get(
                    "/_sandbox/received", params={"offset": self._offset, "limit": 5000}
                ).json()
                if not page:
                    return
                self.received += page
                self._offset += len(page)

    def close(self) -> None:
        self._stack.close()


@dataclass
class Row:
    """One line of the chaos table."""

    scenario: str
    jobs: int
    lost: int
    multiple_outcomes: int
    double_sends: int
    explained_double_sends: int  # from requests in flight at a kill or a power loss
    dead_letters: int
    expired: int
    drain_s: float
    statuses: dict[str, int] = field(default_factory=dict)
    notes: str = ""
    #: Accepted jobs without exactly one final delivery status (scenarios that track them).
    finals_wrong: int = 0

    @property
    def kept_the_promise(self) -> bool:
        return (
            self.lost == 0
            and self.multiple_outcomes == 0
            and self.double_sends == self.explained_double_sends
            and self.finals_wrong == 0
        )


class Rig:
    def __init__(
        self,
        workdir: Path,
        *,
        redis_options: Mapping[str, str] | None = None,
        sandbox_args: list[str] | None = None,
        pod_env: Mapping[str, str] | None = None,
    ) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.redis = RedisServer(
            {"maxmemory-policy": "noeviction", **(redis_options or {})},
            log=workdir / "redis.log",
        )
        self.redis.start()
        self.sandbox = Sandbox(workdir, sandbox_args or [])
        self.sandbox.start()
        self.keys = Keys(f"chaos-{uuid.uuid4().hex[:8]}")
        self.client = self.redis.client(timeout_s=10)
        self.producer = Producer(self.client, self.keys, context=ContractContext(), durability=None)
        self.pod_env = {
            **os.environ,
            **POD_ENV,
            "REDIS_URL": self.redis.url,
            "DISPATCH_KEY_PREFIX": self.keys.prefix,
            "REVICOM_API_URL": self.sandbox.url,
            "REVICOM_API_TOKEN": SANDBOX_TOKEN,
            "PROMETHEUS_MULTIPROC_DIR": str(self._metrics_dir()),
            **(pod_env or {}),
        }
        self.pods: list[Pod] = []
        self.job_ids: set[str] = set()
        self.kills_at: list[float] = []  # when a kill or power loss hit (unix time)
        self._receiver = contextlib.ExitStack()
        self._receiver_port = free_port()

    def _metrics_dir(self) -> Path:
        path = self.workdir / "metrics"
        path.mkdir(exist_ok=True)
        return path

    def pod(self, **env: str) -> Pod:
        pod = Pod({**self.pod_env, **env}, self.workdir / f"pod-{len(self.pods)}.log")
        self.pods.append(pod)
        return pod

    def enqueue(self, jobs: list[dict[str, Any]]) -> None:
        for result in self.producer.iter_enqueue(jobs):
            if isinstance(result, Enqueued):
                self.job_ids.add(result.jobId)

    def a_kill(self) -> None:
        """Note a kill or power loss now: requests that reached the API before it may be
        sent again (the API has no idempotency key)."""
        self.kills_at.append(time.time() + 0.2)  # a request already on the wire still lands

    def _published(self, stream: str = "", field: str = OUTCOME_FIELD) -> Iterator[dict[str, Any]]:
        start = "-"
        while True:
            entries: Any = self.client.xrange(stream or self.keys.results, min=start, count=10_000)
            if not entries:
                return
            for _, fields in entries:
                yield orjson.loads(fields[field.encode()])
            start = "(" + entries[-1][0].decode()

    def receiver(self) -> str:
        """Start the callback receiver (again, on the same port); its CALLBACK_URL."""
        env = {**self.pod_env, "CALLBACK_USERNAME": "chaos", "CALLBACK_PASSWORD": "chaos-pw"}
        log = self.workdir / "receiver.log"
        self._receiver.enter_context(receiver_process(env, port=self._receiver_port, log=log))
        return f"http://chaos:chaos-pw@127.0.0.1:{self._receiver_port}/callbacks"

    def stop_receiver(self) -> None:
        self._receiver.close()

    def final_statuses(self) -> list[dict[str, Any]]:
        """The entries of the statuses stream that say `final`."""
        return [e for e in self._published(self.keys.statuses, STATUS_FIELD) if e["final"]]

    def accepted_messages(self) -> set[str]:
        """The jobIds of accepted messages (conversions have no delivery status)."""
        return {
            o["jobId"]
            for o in self._published()
            if o["status"] == "accepted" and o["channelType"] != "FLASHCALL_CONVERSION"
        }

    def outcomes(self) -> Counter[str]:
        """Outcomes per jobId."""
        return Counter(outcome["jobId"] for outcome in self._published())

    def statuses(self) -> Counter[str]:
        return Counter(outcome["status"] for outcome in self._published())

    def drained(self) -> bool:
        with contextlib.suppress(redis.RedisError):
            outcomes = self.outcomes()
            return all(outcomes[j] for j in self.job_ids)
        return False

    def wait_drained(self, since: float, timeout_s: float = 300) -> float:
        wait_until(self.drained, timeout_s, f"{len(self.job_ids)} outcomes")
        return time.monotonic() - since

    def row(self, scenario: str, drain_s: float, notes: str = "") -> Row:
        self.sandbox.collect()
        outcomes = self.outcomes()
        statuses = self.statuses()
        per_destination = Counter(r["message"]["destination"] for r in self.sandbox.received)
        first_arrival: dict[str, float] = {}
        for record in self.sandbox.received:
            first_arrival.setdefault(record["message"]["destination"], record["receivedAt"])
        doubles = [d for d, n in per_destination.items() if n > 1]
        last_kill = max(self.kills_at, default=0.0)
        explained = [d for d in doubles if first_arrival[d] < last_kill]
        return Row(
            scenario=scenario,
            jobs=len(self.job_ids),
            lost=sum(1 for j in self.job_ids if not outcomes[j]),
            multiple_outcomes=sum(1 for n in outcomes.values() if n > 1),
            double_sends=len(doubles),
            explained_double_sends=len(explained),
            dead_letters=int(self.client.xlen(self.keys.dead)),
            expired=statuses["expired"],
            drain_s=round(drain_s, 1),
            statuses=dict(statuses),
            notes=notes,
        )

    def close(self) -> None:
        for pod in self.pods:
            if pod.alive:
                pod.kill()
        self._receiver.close()
        self.sandbox.close()
        self.client.close()
        self.redis.close()


@contextlib.contextmanager
def rig(workdir: Path, **options: Any) -> Iterator[Rig]:
    world = Rig(workdir, **options)
    try:
        yield world
    finally:
        world.close()
