"""Settings come from the environment, are bounded, and never show the token."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from config import Settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The machine's own settings must not leak into these tests."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)


def test_defaults() -> None:
    settings = Settings()
    assert settings.revicom_api_url == "https://direct.revicom.ltd"
    assert settings.dispatch_key_prefix == "revicom"
    assert settings.tuning("SMS").batch_size == 1000
    assert settings.tuning("FLASHCALL").linger_ms < settings.tuning("SMS").linger_ms


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISPATCH_KEY_PREFIX", "acme")
    monkeypatch.setenv("SMS_BATCH_SIZE", "250")
    monkeypatch.setenv("FLASHCALL_CONVERSION_LINGER_MS", "5")
    settings = Settings()
    assert settings.dispatch_key_prefix == "acme"
    assert settings.tuning("SMS").batch_size == 250
    assert settings.tuning("FLASHCALL_CONVERSION").linger_ms == 5


@pytest.mark.parametrize("size", ["0", "1001"])
def test_batch_size_is_bounded_by_the_api(monkeypatch: pytest.MonkeyPatch, size: str) -> None:
    monkeypatch.setenv("WHATSAPP_BATCH_SIZE", size)
    with pytest.raises(ValidationError, match="whatsapp_batch_size"):
        Settings()


def test_token_never_shows(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("REVICOM_API_TOKEN", "s3cr3t-t0ken")
    settings = Settings()
    logging.getLogger("test").warning("settings: %s %r", settings, settings)
    shown = repr(settings) + str(settings) + settings.model_dump_json() + caplog.text
    assert "s3cr3t-t0ken" not in shown
    assert settings.revicom_api_token is not None
    assert settings.revicom_api_token.get_secret_value() == "s3cr3t-t0ken"


def test_callback_secrets_never_show(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("CALLBACK_URL", "https://dlr:pa55-w0rd@callbacks.example.com/callbacks")
    monkeypatch.setenv("CALLBACK_USERNAME", "dlr")
    monkeypatch.setenv("CALLBACK_PASSWORD", "pa55-w0rd")
    settings = Settings()
    logging.getLogger("test").warning("settings: %s %r", settings, settings)
    shown = repr(settings) + str(settings) + settings.model_dump_json() + caplog.text
    assert "pa55-w0rd" not in shown


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"CALLBACK_EVENTS": "sent,bounce"}, "CALLBACK_EVENTS: bounce"),
        ({"CALLBACK_EVENTS": " , "}, "CALLBACK_EVENTS: empty"),
        ({"CALLBACK_USERNAME": "dlr"}, "both CALLBACK_USERNAME and CALLBACK_PASSWORD"),
        ({"CALLBACK_ALLOW_FROM": "10.0.0.0/8, nowhere"}, "not a network: 'nowhere'"),
        ({"CALLBACK_TRUSTED_PROXIES": "300.1.1.1"}, "not a network"),
        ({"STATUS_GIVE_UP_S": "172800"}, "STATUS_GIVE_UP_S must be at least 3600 s below"),
        ({"LEDGER_TTL_S": "90000"}, "STATUS_GIVE_UP_S must be at least 3600 s below"),
        ({"CALLBACK_URL": "callbacks.example.com/x"}, "CALLBACK_URL must be an http(s) URL"),
        ({"CALLBACK_URL": "https://u:p@host/a b"}, "CALLBACK_URL must be an http(s) URL"),
    ],
)
def test_callback_settings_are_checked(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], says: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=re.escape(says)):
        Settings()


@pytest.mark.parametrize(
    ("env", "line"),
    [
        (
            {"SMS_BATCH_SIZE": "5000"},
            "configuration: SMS_BATCH_SIZE: Input should be less than or equal to 1000",
        ),
        (
            {"CALLBACK_URL": "https://dlr:pa55-w0rd@example.com/callbacks"},
            "configuration: Value error, set both CALLBACK_USERNAME and CALLBACK_PASSWORD, "
            "or neither",
        ),
    ],
)
def test_a_bad_setting_is_one_line_without_its_value(env: dict[str, str], line: str) -> None:
    """The password without its username is refused by a model validator: its error would
    show every input (hide_input_in_errors)."""
    secrets = {"CALLBACK_PASSWORD": "pa55-w0rd", "REVICOM_API_TOKEN": "t0ken-value"}
    done = subprocess.run(
        [str(Path(sys.executable).with_name("revicom-dispatch")), "status"],
        env={**os.environ, **secrets, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines() == [line]
