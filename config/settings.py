"""All settings of revicom-dispatch, from environment variables with documented defaults.

Every field's description is what the README's configuration table shows; the env variable is
the field name in upper case.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


@dataclass(frozen=True)
class ChannelTuning:
    """How a channel's jobs are grouped: cut a batch when full or when its first job waited."""

    batch_size: int
    linger_ms: int


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore", frozen=True)

    redis_url: str = Field(
        "redis://127.0.0.1:6379/0",
        description="Redis holding the job streams, the results stream, the ledger and the "
        "Celery broker.",
    )
    revicom_api_url: str = Field(
        "https://direct.revicom.ltd", description="Base URL of the Revicom Direct API."
    )
    revicom_api_token: SecretStr | None = Field(
        None,
        description="API key (TOKEN_1), sent as `Authorization: Basic {token}`. Secret: never "
        "logged or printed.",
    )
    dispatch_key_prefix: str = Field(
        "revicom",
        pattern=r"^[A-Za-z0-9_.:\-]{1,64}$",
        description="Every Redis key the project writes starts with `{prefix}:`.",
    )
    flashcall_code_max_digits: int = Field(
        4,
        ge=4,
        le=12,
        description="Longest FLASHCALL code accepted. The API takes 4 digits unless support "
        "enabled longer codes for the account.",
    )

    # Batching per channel. OTP channels get a short linger so a code never waits for company;
    # bulk channels wait longer to fill 1,000-message requests.
    sms_batch_size: int = Field(1000, ge=1, le=1000, description="SMS jobs per request.")
    sms_linger_ms: int = Field(
        500, ge=0, le=60_000, description="Longest wait (ms) of an SMS batch's first job."
    )
    whatsapp_batch_size: int = Field(1000, ge=1, le=1000, description="WHATSAPP per request.")
    whatsapp_linger_ms: int = Field(500, ge=0, le=60_000, description="WHATSAPP linger (ms).")
    flashcall_batch_size: int = Field(1000, ge=1, le=1000, description="FLASHCALL per request.")
    flashcall_linger_ms: int = Field(20, ge=0, le=60_000, description="FLASHCALL linger (ms).")
    voicecode_batch_size: int = Field(1000, ge=1, le=1000, description="VOICECODE per request.")
    voicecode_linger_ms: int = Field(20, ge=0, le=60_000, description="VOICECODE linger (ms).")
    flashcall_conversion_batch_size: int = Field(
        1000, ge=1, le=1000, description="Conversion reports per request."
    )
    flashcall_conversion_linger_ms: int = Field(
        50, ge=0, le=60_000, description="Conversion report linger (ms)."
    )

    def tuning(self, channel: str) -> ChannelTuning:
        """Batching of one channel; its settings are `{CHANNEL}_BATCH_SIZE`/`_LINGER_MS`."""
        key = channel.lower()
        return ChannelTuning(
            batch_size=getattr(self, f"{key}_batch_size"),
            linger_ms=getattr(self, f"{key}_linger_ms"),
        )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
