"""`revicom-dispatch validate|enqueue`, run as the installed console script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, cast

import pytest
import redis

from tasks import stamp
from tasks.keys import Keys
from tasks.untrusted import UntrustedJsonError, load
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
    with pytest.raises(UntrustedJsonError) as refused:  # decoded as the worker decodes
        load(b"{not json")
    not_json = str(refused.value)
    assert "not valid JSON" in not_json
    assert result.stderr.splitlines() == [
        "line 2: content: must be a numeric code of 4 digits",
        f"line 3: {not_json}",
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
    # Stamped like the Python producer's jobs, so workers need not validate them again.
    key = stamp.read_key(redis_client, keys.stamp_key)
    [(_, fields)] = cast(Any, redis_client.xrange(keys.jobs("SMS"), count=1))
    sealed = stamp.verify(key, stamp.context_tag(None), fields[b"stamp"], fields[b"job"])
    assert sealed == stamp.Stamp("SMS", 1)


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


def test_enqueue_says_exactly_what_landed_when_redis_refuses_mid_way(
    tmp_path: Path, redis_url: str, redis_client: redis.Redis, keys: Keys
) -> None:
    rows: list[Any] = [{"jobId": f"j{i}", "message": BASE["SMS"]} for i in range(1500)]
    rows.insert(1200, BASE["VOICECODE"])  # line 1201, in the second pipeline
    redis_client.set(keys.jobs("VOICECODE"), "not a stream")  # XADD gets WRONGTYPE
    ids = tmp_path / "ids.jsonl"
    result = run(
        "enqueue",
        str(jsonl(tmp_path / "jobs.jsonl", rows)),
        "--ids",
        str(ids),
        REDIS_URL=redis_url,
        DISPATCH_KEY_PREFIX=keys.prefix,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "Redis error after 1500 job(s): WRONGTYPE" in result.stderr
    assert f"1500 job(s) were enqueued ({ids} lists them)" in result.stderr
    assert "Redis refused 1 job(s) of lines 1001-1501" in result.stderr
    assert redis_client.xlen(keys.jobs("SMS")) == 1500
    lines = [json.loads(line)["line"] for line in ids.read_text().splitlines()]
    assert lines == [n for n in range(1, 1502) if n != 1201]


def test_enqueue_says_what_may_be_lost_when_the_connection_fails_mid_way(
    tmp_path: Path, redis_url: str, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from cli.main import app
    from config import get_settings
    from tasks.producer import Producer

    real = Producer.enqueue_wire
    calls = 0

    def flaky(self: Producer, records: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise redis.ConnectionError("Connection closed by server.")
        return real(self, records)

    monkeypatch.setattr(Producer, "enqueue_wire", flaky)
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("DISPATCH_KEY_PREFIX", keys.prefix)
    get_settings.cache_clear()
    rows = [{"jobId": f"j{i}", "message": BASE["SMS"]} for i in range(2500)]
    ids = tmp_path / "ids.jsonl"
    try:
        result = CliRunner().invoke(
            app, ["enqueue", str(jsonl(tmp_path / "jobs.jsonl", rows)), "--ids", str(ids)]
        )
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 2
    assert "Redis error after 1000 job(s): Connection closed by server." in result.stderr
    assert "the 1000 job(s) of lines 1001-2000 were being written" in result.stderr
    assert "nothing after line 2000 was written" in result.stderr
    assert len(ids.read_text().splitlines()) == 1000


def test_enqueue_with_an_unwritable_ids_file_writes_nothing(
    tmp_path: Path, redis_url: str, redis_client: redis.Redis, keys: Keys
) -> None:
    file = jsonl(tmp_path / "jobs.jsonl", [BASE["SMS"]])
    result = run(
        "enqueue",
        str(file),
        "--ids",
        str(tmp_path / "missing" / "ids.jsonl"),
        REDIS_URL=redis_url,
        DISPATCH_KEY_PREFIX=keys.prefix,
    )
    assert result.returncode == 2
    assert "nothing enqueued" in result.stderr
    assert redis_client.exists(keys.jobs("SMS")) == 0


def test_enqueue_reads_standard_input_as_bytes(
    redis_url: str, redis_client: redis.Redis, keys: Keys
) -> None:
    lines = json.dumps(variant("SMS", content="Привет")) + "\n" + json.dumps(BASE["FLASHCALL"])
    result = run("enqueue", "-", stdin=lines, REDIS_URL=redis_url, DISPATCH_KEY_PREFIX=keys.prefix)
    assert result.returncode == 0, result.stderr
    assert redis_client.xlen(keys.jobs("SMS")) == 1
    assert redis_client.xlen(keys.jobs("FLASHCALL")) == 1
