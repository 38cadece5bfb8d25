"""Peak memory and time of `revicom-dispatch validate` and `enqueue` on a large file.

A file of N valid SMS lines (1,000,000 by default) and the same file with an invalid last
line are written to a temporary directory; each command runs as its own process, whose peak
RSS is read from the kernel when it is reaped (`os.wait4`). `enqueue` writes to a Redis (the
one at REDIS_URL, else one started here) under a prefix of its own, deleted afterwards; the
file with a bad last line must leave the streams untouched (all or nothing).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import redis

from bench.proc import delete_prefix
from bench.report import report
from devenv.redis_server import ensure_redis
from tasks.channels import CHANNELS
from tasks.keys import Keys

SCRIPT = str(Path(sys.executable).with_name("revicom-dispatch"))
TARGET_PEAK_MB = 150


def write_jobs(path: Path, n: int) -> None:
    """N valid SMS jobs, as an upstream app would export them."""
    with path.open("wb") as sink:
        for start in range(0, n, 10_000):
            sink.write(
                b"".join(
                    orjson.dumps(
                        {
                            "jobId": f"cli-{i}",
                            "message": {
                                "channelType": "SMS",
                                "senderName": "SENDER",
                                "destination": f"1408{i:07d}",
                                "content": f"Your order {i} has shipped, track it at "
                                f"https://example.com/t/{i}",
                                "tags": ["campaign"],
                            },
                        }
                    )
                    + b"\n"
                    for i in range(start, min(n, start + 10_000))
                )
            )


def measure(args: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Exit code, seconds and peak RSS (MB) of one command, output discarded."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [SCRIPT, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    assert process.stderr is not None
    tail = process.stderr.read()[-2000:]  # read to the end, so the child never blocks
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return {
        "exit_code": process.returncode,
        "seconds": round(time.perf_counter() - started, 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),  # KiB on Linux
        "stderr_tail": tail.decode("utf-8", "replace").strip().splitlines()[-2:],
    }


def stream_lengths(client: redis.Redis, keys: Keys) -> dict[str, int]:
    return {c: int(client.xlen(keys.jobs(c))) for c in CHANNELS if client.exists(keys.jobs(c))}


def run(n: int) -> dict[str, Any]:
    results: dict[str, Any] = {"lines": n}
    with (
        tempfile.TemporaryDirectory(prefix="revicom-bench-cli-") as workdir,
        ensure_redis(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")) as url,
    ):
        good, bad, ids = (
            Path(workdir, "good.jsonl"),
            Path(workdir, "bad.jsonl"),
            Path(workdir),
        )  # ids: --ids files here
        started = time.perf_counter()
        write_jobs(good, n)
        shutil.copyfile(good, bad)
        with bad.open("ab") as sink:  # the last line breaks a rule: nothing may be enqueued
            sink.write(b'{"channelType": "SMS", "senderName": "S", "destination": "x"}\n')
        results["file_mb"] = round(good.stat().st_size / 2**20, 1)
        results["generate_seconds"] = round(time.perf_counter() - started, 2)

        client = redis.Redis.from_url(url)
        keys = Keys(f"bench-cli-{uuid.uuid4().hex[:12]}")
        env = {**os.environ, "REDIS_URL": url, "DISPATCH_KEY_PREFIX": keys.prefix}
        try:
            results["validate"] = measure(["validate", str(good)], env)
            results["validate_bad_last_line"] = measure(["validate", str(bad)], env)
            bad_run = measure(["enqueue", str(bad), "--ids", str(ids / "bad-ids.jsonl")], env)
            bad_run["streams_after"] = stream_lengths(client, keys)
            results["enqueue_bad_last_line"] = bad_run
            good_run = measure(["enqueue", str(good), "--ids", str(ids / "ids.jsonl")], env)
            good_run["streams_after"] = stream_lengths(client, keys)
            with (ids / "ids.jsonl").open("rb") as listed:
                good_run["ids_lines"] = sum(1 for _ in listed)
            results["enqueue"] = good_run
        finally:
            delete_prefix(client, keys.prefix)
            client.close()
    results["checks"] = checks(results, n)
    results["machine"] = f"{os.cpu_count()} cores, Redis and the command on this machine"
    return results


def checks(results: dict[str, Any], n: int) -> dict[str, bool]:
    runs = ("validate", "validate_bad_last_line", "enqueue_bad_last_line", "enqueue")
    return {
        f"peak RSS < {TARGET_PEAK_MB} MB": all(
            results[r]["peak_rss_mb"] < TARGET_PEAK_MB for r in runs
        ),
        "validate: exit 0, bad last line exit 1": results["validate"]["exit_code"] == 0
        and results["validate_bad_last_line"]["exit_code"] == 1,
        "enqueue with a bad last line: exit 1, streams untouched": (
            results["enqueue_bad_last_line"]["exit_code"] == 1
            and results["enqueue_bad_last_line"]["streams_after"] == {}
        ),
        "enqueue: exit 0, every job on the stream and in --ids": (
            results["enqueue"]["exit_code"] == 0
            and results["enqueue"]["streams_after"] == {"SMS": n}
            and results["enqueue"]["ids_lines"] == n
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path, default=Path("bench-results/cli_memory.json"))
    args = parser.parse_args()
    results = run(args.lines)
    report(results, args.out, width=56)
    if not all(results["checks"].values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
