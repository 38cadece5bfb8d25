"""A channel is whole: each piece `tasks/channels.py` says a new channel needs is there.

Adding a channel touches a few places that cannot be derived from one list (a model for the
type checker, declared settings, the sandbox's independent rules, the demo's load); these
tests name the piece that is missing instead of leaving it to fail far away.
"""

from __future__ import annotations

import json
import typing
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from config import Settings
from devenv.demo_load import REFUSED_BY_PRODUCER, demo_jobs
from sandbox.rules import Validator
from tasks.channels import BULK_QUEUE, CHANNELS
from tasks.contract import CHANNEL_MODELS, MESSAGE_CHANNELS, Message, field_errors, parse_message
from tests.contract_cases import BASE
from tests.vectors import INVALID, VALID

ROOT = Path(__file__).resolve().parents[1]


def test_every_channel_has_its_model_and_every_model_its_channel() -> None:
    named = [getattr(model, "channel", None) for model in CHANNEL_MODELS.values()]
    assert list(CHANNEL_MODELS) == named
    assert sorted(CHANNEL_MODELS) == sorted(CHANNELS)
    assert "VK" in CHANNELS


def test_the_message_union_holds_every_model() -> None:
    """The union is written out for the type checker: it must not forget a model."""
    union, *_ = typing.get_args(Message)
    members = [typing.get_args(branch)[0] for branch in typing.get_args(union)]
    assert sorted(m.__name__ for m in members) == sorted(
        m.__name__ for m in CHANNEL_MODELS.values()
    )


def test_an_unknown_channel_is_told_every_channel() -> None:
    with pytest.raises(ValidationError) as caught:
        parse_message({**BASE["SMS"], "channelType": "VIBER"})
    [error] = field_errors(caught.value)
    assert error.path == "channelType"
    assert f"must be one of {', '.join(MESSAGE_CHANNELS)} (" in error.rule
    assert set(MESSAGE_CHANNELS) == set(CHANNELS) - {"FLASHCALL_CONVERSION"}


@pytest.mark.parametrize("channel", sorted(CHANNELS))
def test_every_channel_has_its_settings(monkeypatch: pytest.MonkeyPatch, channel: str) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setenv(f"{channel}_BATCH_SIZE", "123")
    monkeypatch.setenv(f"{channel}_LINGER_MS", "45")
    monkeypatch.setenv(f"{channel}_MAX_AGE_S", "678")
    tuning = Settings().tuning(channel)
    assert (tuning.batch_size, tuning.linger_ms, tuning.max_age_s) == (123, 45, 678.0)


def test_vk_is_batched_as_a_bulk_channel(monkeypatch: pytest.MonkeyPatch) -> None:
    """VK is no code: the bulk queue, and the same batching and age limit as SMS."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    settings = Settings()
    assert CHANNELS["VK"].queue == BULK_QUEUE
    assert settings.tuning("VK") == settings.tuning("SMS")
    monkeypatch.setenv("VK_BATCH_SIZE", "1001")
    with pytest.raises(ValidationError, match="vk_batch_size"):
        Settings()


@pytest.mark.parametrize("channel", MESSAGE_CHANNELS)
def test_the_sandbox_knows_every_message_channel(channel: str) -> None:
    """The sandbox's own rules (not the client's model) take the channel's base message."""
    assert Validator(datetime(2026, 11, 22, 12)).message(BASE[channel]) is None


def _channel_of(message: dict[str, Any]) -> str | None:
    kind = message.get("channelType")
    if isinstance(kind, str):
        return kind
    return "FLASHCALL_CONVERSION" if "messageUuid" in message else None


def test_the_shared_vectors_cover_every_channel() -> None:
    """Each channel has valid and invalid vectors the client and the sandbox both judge."""
    assert set(CHANNELS) <= {_channel_of(m) for _, m in VALID}
    assert set(CHANNELS) <= {_channel_of(m) for _, m, *_ in INVALID}


def test_the_demo_sends_every_message_channel() -> None:
    jobs = demo_jobs(sms=1, flashcall=1, voicecode=1, whatsapp=1, vk=1, bad_numbers=0)
    assert sorted(j["message"]["channelType"] for j in jobs) == sorted(MESSAGE_CHANNELS)
    for job in jobs:
        parse_message(job["message"])  # the demo's good load is valid
    assert "VK" in {j["message"]["channelType"] for j in REFUSED_BY_PRODUCER}


def test_the_published_job_schema_names_every_message_channel() -> None:
    schema = json.loads((ROOT / "schemas" / "job.schema.json").read_text(encoding="utf-8"))
    consts = {
        model["properties"]["channelType"]["const"]
        for model in schema["$defs"].values()
        if "channelType" in model.get("properties", {})
    }
    assert consts == set(MESSAGE_CHANNELS)
