"""`revicom-dispatch validate|enqueue`, run as the installed console script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import redis

from tasks.keys import Keys
from tests.contract_cases import BASE, variant

SCRIPT = Path(sys.executable).with_name("revicom-dispatch")


def run(*args: str, stdin: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200", **env},
        check=False,
    )


def jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(r if isinstance(r, str) else json.dumps(r) + "\n" for r in rows))
    return path


def test_validate_accepts_a_good_file(tmp_path: Path) -> None:
    good = jsonl(
        tmp_path / "good.jsonl", [BASE["SMS"], "\n", {"jobId": "j", "message": BASE["FLASHCALL"]}]
    )
    result = run("validate", str(good))
    assert result.returncode == 0, result.stderr
    assert "2 valid, 0 invalid" in result.stdout


def test_validate_names_the_line_the_field_and_the_rule(tmp_path: Path) -> None:
    bad = jsonl(
        tmp_path / "bad.jsonl",
        [
            BASE["SMS"],
            variant("FLASHCALL", content="12"),
            "{not json\n",
            {"jobId": "j", "message": variant("WHATSAPP", content__buttons=[])},
            "[1, 2]\n",
        ],
    )
    result = run("validate", str(bad))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "line 2: content: must be a numeric code of 4 digits",
        "line 3: not valid JSON: Expecting property name enclosed in double quotes (column 2)",
        "line 4: message.content.buttons: must have at least 1 items",
        "line 5: must be a JSON object",
    ]
    assert "1 valid, 4 invalid" in result.stdout


def test_validate_reads_standard_input() -> None:
    result = run("validate", "-", stdin=json.dumps(variant("SMS", tags=["x y"])) + "\n")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "line 1: tags[0]: must contain only ASCII letters, digits and '_' (got 'x y')"
    )


def test_enqueue_writes_every_line_and_a_summary(
    tmp_path: Path, redis_url: str, redis_client: redis.Redis, keys: Keys
) -> None:
    rows = [{"jobId": f"j{i}", "message": BASE["SMS"]} for i in range(1500)]
    rows.append(BASE["VOICECODE"])
    ids = tmp_path / "ids.jsonl"
    result = run(
        "enqueue",
        str(jsonl(tmp_path / "jobs.jsonl", rows)),
        "--ids",
        str(ids),
        REDIS_URL=redis_url,
        DISPATCH_KEY_PREFIX=keys.prefix,
    )
    assert result.returncode == 0, result.stderr
    assert redis_client.xlen(keys.jobs("SMS")) == 1500
    assert redis_client.xlen(keys.jobs("VOICECODE")) == 1
    assert "1501" in result.stdout
    records = [json.loads(line) for line in ids.read_text().splitlines()]
    assert [r["line"] for r in records] == list(range(1, 1502))
    assert records[0]["jobId"] == "j0"
    assert records[-1]["channelType"] == "VOICECODE"


def test_enqueue_writes_nothing_when_a_line_is_invalid(
    tmp_path: Path, redis_url: str, redis_client: redis.Redis, keys: Keys
) -> None:
    file = jsonl(tmp_path / "jobs.jsonl", [BASE["SMS"], variant("SMS", ttl=1), BASE["SMS"]])
    result = run("enqueue", str(file), REDIS_URL=redis_url, DISPATCH_KEY_PREFIX=keys.prefix)
    assert result.returncode == 1
    assert "line 2: ttl: must be at least 60" in result.stderr
    assert "nothing enqueued" in result.stderr
    assert redis_client.xlen(keys.jobs("SMS")) == 0

    skipped = run(
        "enqueue", str(file), "--skip-invalid", REDIS_URL=redis_url, DISPATCH_KEY_PREFIX=keys.prefix
    )
    assert skipped.returncode == 1
    assert redis_client.xlen(keys.jobs("SMS")) == 2


def test_enqueue_without_redis_fails_fast(tmp_path: Path) -> None:
    file = jsonl(tmp_path / "jobs.jsonl", [BASE["SMS"]])
    result = run("enqueue", str(file), REDIS_URL="redis://127.0.0.1:1/0")
    assert result.returncode == 2
    assert "Redis error after 0 job(s)" in result.stderr
