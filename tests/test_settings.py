"""Settings come from the environment, are bounded, and never show the token."""

from __future__ import annotations

import logging

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
