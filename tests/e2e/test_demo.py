"""The README's first command: the demo runs the whole pipeline and cleans up after itself."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from tasks.contract import MESSAGE_CHANNELS
from tests.e2e.harness import Lines, wait_until

SCRIPT = str(Path(sys.executable).with_name("revicom-dispatch"))


def processes_with(marker: str) -> list[int]:
    """Processes whose environment mentions `marker` (the demo's key prefix)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if marker.encode() in Path(f"/proc/{pid}/environ").read_bytes():
                found.append(int(pid))
        except OSError:
            continue
    return found


def demo_env(redis_url: str) -> dict[str, str]:
    return {**os.environ, "REDIS_URL": redis_url, "COLUMNS": "120"}


def test_the_demo_sends_everything_and_stops_what_it_started(redis_url: str) -> None:
    done = subprocess.run(
        [SCRIPT, "demo"],
        env=demo_env(redis_url),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert re.search(r"SMS\s+│\s+19995 │\s+7 │\s+0 │", out), out
    assert re.search(r"WHATSAPP\s+│\s+500 │\s+0 │\s+0 │", out), out
    assert re.search(r"VK\s+│\s+500 │\s+0 │\s+0 │", out), out
    for channel in MESSAGE_CHANNELS:
        row = re.search(rf"│ {channel}\s+│([\d\s│,]+)│\s*$", out, re.MULTILINE)
        assert row is not None, out
        accepted, _, _, delivered, undelivered, unsent, unknown, *_ = (
            int(cell.replace(",", "")) for cell in row.group(1).split("│")
        )
        # Every accepted message reached one final status, most of them delivered.
        assert delivered + undelivered + unsent + unknown == accepted, row.group(0)
        assert unknown == 0
        assert delivered > 0.8 * accepted
    assert "rejected: demo-raw-blank: message.content: must not be blank" in out
    assert "refused by the producer: message.ttl: must be at least 60" in out
    assert "refused by the producer: message.content: must have at most 2048 characters" in out
    prefix = re.search(r"keys under (demo-\d+):", out)
    assert prefix is not None
    assert processes_with(f"DISPATCH_KEY_PREFIX={prefix.group(1)}") == []


def test_ctrl_c_stops_everything(redis_url: str) -> None:
    demo = subprocess.Popen(
        [SCRIPT, "demo", "--keep-running"],
        env=demo_env(redis_url),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert demo.stdout is not None
    output, lines = "", Lines(demo.stdout)
    deadline = time.monotonic() + 120
    while "Ctrl-C stops it" not in output:
        line = lines.next(deadline, "the demo's start")
        assert line, output
        output += line
    prefix = re.search(r"keys under (demo-\d+):", output)
    assert prefix is not None
    marker = f"DISPATCH_KEY_PREFIX={prefix.group(1)}"
    assert processes_with(marker)  # the pod and Flower are running
    demo.send_signal(signal.SIGINT)
    assert demo.wait(timeout=60) == 130
    started = time.monotonic()
    wait_until(lambda: processes_with(marker) == [], 10, "everything stopped")
    assert time.monotonic() - started < 10
