"""All settings of revicom-dispatch, from environment variables with documented defaults.

Every field's description is what the README's configuration table shows; the env variable is
the field name in upper case.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import Literal, Self

from pydantic import Field, SecretStr, TypeAdapter, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tasks.api_terms import CALLBACK_EVENTS
from tasks.channels import CHANNELS


@dataclass(frozen=True)
class ChannelTuning:
    """How a channel's jobs are grouped: cut a batch when full or when its first job waited."""

    batch_size: int
    linger_ms: int
    max_age_s: float
    rate_limit: float  # units a second for every pod together; 0: none


#: How long before its record expires a message still without a final status must be given
#: up (STATUS_GIVE_UP_S against LEDGER_TTL_S).
GIVE_UP_MARGIN_S = 3600.0


class Settings(BaseSettings):
    # hide_input_in_errors: a model validator's error would show every input, the secrets too.
    model_config = SettingsConfigDict(
        env_file=None, extra="ignore", frozen=True, hide_input_in_errors=True
    )

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

    # Sending.
    send_timeout_s: float = Field(
        70.0, gt=0, le=600, description="Read timeout of one API request (the docs advise 70 s)."
    )
    connect_timeout_s: float = Field(5.0, gt=0, le=60, description="TCP/TLS connect timeout.")
    retry_max_attempts: int = Field(
        10,
        ge=1,
        le=50,
        description="Attempts per request for 5xx, 429 and network errors: with the default "
        "backoff, ten reach about RETRY_MAX_SECONDS, so a flaky API is retried for the whole "
        "deadline (a down one opens the circuit first).",
    )
    retry_max_seconds: float = Field(
        60.0, gt=0, le=3600, description="No new attempt starts after this long (per request)."
    )
    retry_backoff_ms: int = Field(
        500, ge=1, le=60_000, description="First retry delay; doubles per attempt, with jitter."
    )
    retry_backoff_max_ms: int = Field(
        10_000, ge=1, le=600_000, description="Longest retry delay (Retry-After may ask more)."
    )

    # The circuit breaker all pods share.
    circuit_failures: int = Field(
        5,
        ge=1,
        le=1000,
        description="Failed API requests in a row (5xx, 429, network errors; any pod) that "
        "open the circuit: every pod stops sending, jobs wait in their streams. A 401/403 "
        "opens it at once.",
    )
    circuit_cooldown_s: float = Field(
        5.0,
        ge=0.1,
        le=3600,
        description="Wait before one probe batch tests the API; doubled after each failed probe.",
    )
    circuit_cooldown_max_s: float = Field(
        60.0, ge=0.1, le=3600, description="Longest wait between two probes."
    )

    # The account balance, and the guard that keeps it for one-time codes.
    balance_refresh_s: float = Field(
        60.0,
        ge=0,
        le=86_400,
        description="How often one pod (a lease) asks GET /api/v1/balance and stores the answer "
        "in Redis for every pod, `status` and the metrics; 0: never.",
    )
    min_balance: Decimal | None = Field(
        None,
        allow_inf_nan=False,
        description="With it, the bulk channels (SMS, WHATSAPP, VK) pause while any currency of "
        "the balance is below this amount: their jobs wait in their streams, codes keep going; "
        "bulk resumes by itself once the balance is back. Unset: no guard.",
    )

    # Reliability.
    lease_ms: int = Field(
        10_000,
        ge=500,
        le=600_000,
        description="Liveness lease of every holder of stream entries (a reader, a queued or "
        "a running batch), renewed every quarter of it; when a holder's process dies its "
        "entries are taken over this long after its last renewal.",
    )
    otp_lease_ms: int = Field(
        3000,
        ge=500,
        le=600_000,
        description="The same lease for the OTP lane's holders (FLASHCALL, VOICECODE, "
        "conversions): a dead pod's codes are taken over this soon.",
    )
    queued_batch_timeout_s: float = Field(
        600.0,
        ge=10,
        le=86_400,
        description="A batch still waiting on the broker after this long is let go (its task "
        "was lost with the broker, say): its entries are taken over and batched again.",
    )
    ledger_ttl_s: int = Field(
        172_800,
        ge=86_400,
        description="How long a jobId's final outcome is remembered (>= the API's longest ttl).",
    )
    results_retention_s: float = Field(
        86_400.0,
        ge=60,
        description="Outcomes older than this are trimmed from the results stream, but never "
        "ones a consumer group has not read and acknowledged.",
    )
    dead_retention_s: float = Field(
        604_800.0,
        ge=60,
        description="Dead letters older than this are trimmed (replay them before), but never "
        "ones a consumer group has not read and acknowledged.",
    )
    durable_enqueue: Literal["none", "local", "replicas", "both"] = Field(
        "none",
        description="When an enqueue returns: `none` once Redis has the jobs in memory (a crash "
        "loses what its `appendfsync` had not written: up to 1 s with `everysec`); `local` once "
        "the AOF is fsynced, `replicas` once DURABLE_REPLICAS replicas have it, `both` (WAITAOF, "
        "Redis >= 7.2).",
    )
    durable_replicas: int = Field(
        1, ge=0, le=16, description="Replicas that must have a job (`replicas`, `both`)."
    )
    durable_timeout_ms: int = Field(
        1000,
        ge=1,
        le=60_000,
        description="Longest wait for durability; past it the enqueue raises (the jobs are "
        "written, not confirmed durable).",
    )
    max_job_bytes: int = Field(
        65_536, ge=1024, description="Larger stream entries are rejected as malformed."
    )
    max_deliveries: int = Field(
        16,
        ge=2,
        le=1000,
        description="A job handed out this often without finishing (whoever takes it dies) "
        "fails and is dead-lettered. Above log2(batch size) + 1: a batch a process died with "
        "is sent in halves, so a poison job is alone before it reaches this.",
    )
    max_queued_batches: int = Field(
        4,
        ge=1,
        le=1000,
        description="Per queue: the batcher stops reading while this many batches wait.",
    )
    shutdown_grace_s: float = Field(
        30.0, ge=0, le=3600, description="On SIGTERM, time allowed to send what was read."
    )
    otp_concurrency: int = Field(
        32,
        ge=1,
        le=256,
        description="Threads of the OTP node (`revicom-dispatch worker`): OTP batches wait on "
        "the API, so on a slow API this many requests overlap.",
    )
    bulk_concurrency: int = Field(
        2,
        ge=1,
        le=256,
        description="Worker processes for bulk batches (`revicom-dispatch worker`).",
    )

    # Delivery tracking: callbacks, their receiver, and polling.
    callback_url: SecretStr | None = Field(
        None,
        description="The receiver's public URL as the API calls it "
        "(`https://user:password@host/callbacks`); with it every message whose job brings no "
        "`callbackUrl` asks for callbacks. Secret: it may carry credentials.",
    )
    callback_events: str = Field(
        "sent,delivered",
        description="Comma-separated callback events asked for with CALLBACK_URL: `delivered` "
        "(the final status), `sent`, `read`, `price`, `click`.",
    )
    callback_username: str | None = Field(
        None, description="With CALLBACK_PASSWORD: the receiver asks for Basic credentials."
    )
    callback_password: SecretStr | None = Field(
        None, description="The receiver's Basic password. Secret: never logged or printed."
    )
    callback_allow_from: str = Field(
        "",
        description="Comma-separated networks (CIDR) the receiver takes callbacks from; empty: "
        "any. The vendor calls back from 185.203.96.7.",
    )
    callback_trusted_proxies: str = Field(
        "",
        description="Comma-separated networks of proxies in front of the receiver: from them "
        "(only) `X-Forwarded-For` names the caller.",
    )
    callback_max_body_bytes: int = Field(
        1_048_576, ge=1024, le=67_108_864, description="Largest callback body (413 above)."
    )
    callback_max_events: int = Field(
        1000, ge=1, le=100_000, description="Most events in one callback body (413 above)."
    )
    callback_park_s: float = Field(
        600.0,
        ge=1,
        le=86_400,
        description="How long a callback whose messageUuid is not known yet waits for it "
        "(its job's outcome is being published); then it is dropped and counted unmatched.",
    )
    status_poll_after_s: float = Field(
        900.0,
        ge=0.1,
        le=86_400,
        description="An accepted message without a final status this long after its 201 is "
        "looked up with GET /api/v1/message; then again with doubling pauses.",
    )
    status_poll_max_interval_s: float = Field(
        3600.0, ge=0.1, le=86_400, description="Longest pause between two lookups of a message."
    )
    status_give_up_s: float = Field(
        90_000.0,
        ge=1,
        description="A message still without a final status this long after its 201 gets the "
        "final status `unknown` (above the API's longest ttl, 86,400 s; an hour below "
        "LEDGER_TTL_S at least).",
    )
    status_poll_rps: float = Field(
        5.0,
        gt=0,
        le=1000,
        description="Most lookup requests a second (100 messages each), for all pods together: "
        "one poller at a time holds a lease.",
    )
    statuses_retention_s: float = Field(
        86_400.0,
        ge=60,
        description="Status entries older than this are trimmed from the statuses stream, but "
        "never ones a consumer group has not read and acknowledged.",
    )

    metrics_port: int = Field(
        9808,
        ge=0,
        le=65535,
        description="Prometheus metrics of a worker pod (or node) on this port; 0 turns it off.",
    )

    # Batching per channel. OTP channels get a short linger so a code never waits for company;
    # bulk channels wait longer to fill 1,000-message requests.
    sms_batch_size: int = Field(1000, ge=1, le=1000, description="SMS jobs per request.")
    sms_linger_ms: int = Field(
        500, ge=0, le=60_000, description="Longest wait (ms) of an SMS batch's first job."
    )
    whatsapp_batch_size: int = Field(1000, ge=1, le=1000, description="WHATSAPP per request.")
    whatsapp_linger_ms: int = Field(500, ge=0, le=60_000, description="WHATSAPP linger (ms).")
    vk_batch_size: int = Field(1000, ge=1, le=1000, description="VK per request.")
    vk_linger_ms: int = Field(500, ge=0, le=60_000, description="VK linger (ms).")
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

    # How late a message may still go: older ones get the outcome `expired` instead of being
    # sent late (a code nobody waits for any more). Age counts from the enqueue.
    sms_max_age_s: float = Field(
        86_400.0, gt=0, description="Oldest SMS still sent (s): a campaign may wait out an outage."
    )
    whatsapp_max_age_s: float = Field(86_400.0, gt=0, description="Oldest WHATSAPP still sent (s).")
    vk_max_age_s: float = Field(86_400.0, gt=0, description="Oldest VK still sent (s).")
    flashcall_max_age_s: float = Field(
        300.0, gt=0, description="Oldest FLASHCALL still sent (s): codes go stale fast."
    )
    voicecode_max_age_s: float = Field(300.0, gt=0, description="Oldest VOICECODE still sent (s).")
    flashcall_conversion_max_age_s: float = Field(
        86_400.0, gt=0, description="Oldest conversion report still sent (s)."
    )

    # Send rates, enforced in Redis for every pod together (worker/rate_limits/).
    sms_rate_limit: float = Field(
        0.0,
        ge=0,
        allow_inf_nan=False,
        description="Most SMS a second (or segments, see RATE_LIMIT_UNIT), all pods together; "
        "0: no limit of its own.",
    )
    whatsapp_rate_limit: float = Field(
        0.0, ge=0, allow_inf_nan=False, description="Most WHATSAPP a second; 0: none."
    )
    vk_rate_limit: float = Field(0.0, ge=0, allow_inf_nan=False, description="Most VK a second.")
    flashcall_rate_limit: float = Field(
        0.0, ge=0, allow_inf_nan=False, description="Most FLASHCALL a second; 0: none."
    )
    voicecode_rate_limit: float = Field(
        0.0, ge=0, allow_inf_nan=False, description="Most VOICECODE a second; 0: none."
    )
    flashcall_conversion_rate_limit: float = Field(
        0.0, ge=0, allow_inf_nan=False, description="Most conversion reports a second; 0: none."
    )
    account_rate_limit: float = Field(
        0.0,
        ge=0,
        allow_inf_nan=False,
        description="Most units a second over every channel (the account's contracted rate), "
        "all pods together; 0: none.",
    )
    otp_rate_share: float = Field(
        0.2,
        ge=0,
        lt=1,
        description="Share of ACCOUNT_RATE_LIMIT only the code channels (FLASHCALL, VOICECODE, "
        "conversions) may use: the bulk channels together get at most (1 - share) of it, so a "
        "campaign never takes the codes' share; codes may use all of it while bulk is idle.",
    )
    rate_burst_s: float = Field(
        1.0,
        gt=0,
        le=60,
        allow_inf_nan=False,
        description="Seconds of a limit that may go at once after an idle spell (the burst); a "
        "request larger than that is paced (the next one waits), never refused.",
    )
    rate_limit_unit: Literal["message", "segment"] = Field(
        "message",
        description="What the limits count: `message`, or `segment` (an SMS counts its parts, "
        "as the account is billed and throttled; other channels count 1).",
    )
    adaptive_rate: bool = Field(
        False,
        description="On a 429 a channel's rate halves for every pod and then climbs back by 5 % "
        "of its limit a second, never above its limit; a channel without a limit learns one "
        "from what the API accepted before the 429.",
    )

    @model_validator(mode="after")
    def _poison_is_alone_before_it_fails(self) -> Self:
        largest = max(self.tuning(c).batch_size for c in CHANNELS)
        if self.max_deliveries <= largest.bit_length() + 1:
            raise ValueError(
                f"MAX_DELIVERIES must exceed {largest.bit_length() + 1} (log2 of the largest "
                "batch size, plus one): a poison job's neighbours would fail with it"
            )
        return self

    @model_validator(mode="after")
    def _circuit_opens_before_retries_run_out(self) -> Self:
        if self.circuit_failures > self.retry_max_attempts:
            raise ValueError(
                "CIRCUIT_FAILURES must not exceed RETRY_MAX_ATTEMPTS: a batch would run out of "
                "retries (and dead-letter its jobs) before an outage opens the circuit"
            )
        return self

    @model_validator(mode="after")
    def _callback_settings_agree(self) -> Self:
        unknown = set(self.callback_event_list) - set(CALLBACK_EVENTS)
        if unknown or not self.callback_event_list:
            raise ValueError(
                f"CALLBACK_EVENTS: {', '.join(sorted(unknown)) or 'empty'}; known events: "
                + ", ".join(CALLBACK_EVENTS)
            )
        if self.callback_url is not None and not _api_takes_url(
            self.callback_url.get_secret_value()
        ):
            # Without the value: it may carry credentials.
            raise ValueError(
                "CALLBACK_URL must be an http(s) URL the API takes (no spaces or control "
                "characters): every message would be refused with it"
            )
        if (self.callback_username is None) != (self.callback_password is None):
            raise ValueError("set both CALLBACK_USERNAME and CALLBACK_PASSWORD, or neither")
        networks(self.callback_allow_from)
        networks(self.callback_trusted_proxies)
        if self.status_give_up_s + GIVE_UP_MARGIN_S > self.ledger_ttl_s:
            raise ValueError(
                f"STATUS_GIVE_UP_S must be at least {GIVE_UP_MARGIN_S:.0f} s below "
                "LEDGER_TTL_S: a message's jobId is forgotten then, and no final status could "
                "be published for it (the margin covers a poller down for a while)"
            )
        return self

    @model_validator(mode="after")
    def _guard_has_a_balance(self) -> Self:
        if self.min_balance is not None and not self.balance_refresh_s:
            raise ValueError(
                "MIN_BALANCE needs BALANCE_REFRESH_S > 0: nobody would read the balance, and "
                "the guard would never apply"
            )
        return self

    @model_validator(mode="after")
    def _queued_batches_outlive_their_wait(self) -> Self:
        for channel in CHANNELS:
            rate = self.tightest_rate(channel)
            batch = self.tuning(channel).batch_size
            if rate and batch * self.max_queued_batches / rate > self.queued_batch_timeout_s:
                raise ValueError(
                    f"{channel}_BATCH_SIZE x MAX_QUEUED_BATCHES ({batch} x "
                    f"{self.max_queued_batches}) at its rate limit ({rate:g}/s) takes longer "
                    f"than QUEUED_BATCH_TIMEOUT_S ({self.queued_batch_timeout_s:g} s): queued "
                    "batches would be let go while earlier ones wait for budget; lower the "
                    "batch size"
                )
        return self

    @property
    def callback_event_list(self) -> list[str]:
        return [e.strip() for e in self.callback_events.split(",") if e.strip()]

    def tuning(self, channel: str) -> ChannelTuning:
        """Batching and rate of one channel: `{CHANNEL}_BATCH_SIZE`, `_LINGER_MS`, `_MAX_AGE_S`,
        `_RATE_LIMIT`."""
        key = channel.lower()
        return ChannelTuning(
            batch_size=getattr(self, f"{key}_batch_size"),
            linger_ms=getattr(self, f"{key}_linger_ms"),
            max_age_s=getattr(self, f"{key}_max_age_s"),
            rate_limit=getattr(self, f"{key}_rate_limit"),
        )

    def tightest_rate(self, channel: str) -> float:
        """The lowest limit a channel's requests draw on (0: none), adaptation aside."""
        limits = [self.tuning(channel).rate_limit, self.account_rate_limit]
        if self.account_rate_limit and not CHANNELS[channel].otp:
            limits.append(self.account_rate_limit * (1 - self.otp_rate_share))
        return min((limit for limit in limits if limit > 0), default=0.0)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()


def networks(text: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Comma-separated networks (`10.0.0.0/8, 185.203.96.7`), raising ValueError on a bad one."""
    found = []
    for part in text.split(","):
        if part.strip():
            try:
                found.append(ipaddress.ip_network(part.strip(), strict=False))
            except ValueError:
                raise ValueError(f"not a network: {part.strip()!r}") from None
    return found


def _api_takes_url(url: str) -> bool:
    """Whether the job contract's callbackUrl rule takes `url` (imported here: the contract
    reads the settings)."""
    from tasks.contract.fields import HttpUrl  # noqa: PLC0415

    try:
        TypeAdapter(HttpUrl).validate_python(url)
    except ValidationError:
        return False
    return True
