"""The benchmarks' jobs: an SMS campaign's and OTP codes'."""

from __future__ import annotations

from typing import Any


def sms_jobs(n: int, tag: str) -> list[dict[str, Any]]:
    return [
        {
            "jobId": f"{tag}-{i}",
            "message": {
                "channelType": "SMS",
                "senderName": "SENDER",
                "destination": f"1408{i:07d}",
                "content": f"Your order {i} has shipped, track it at https://example.com/t/{i}",
                "tags": ["campaign"],
            },
        }
        for i in range(n)
    ]


def code_destination(i: int) -> str:
    """Code `i`'s destination: its arrivals at the sandbox are found by it."""
    return f"1999{i:07d}"


def code_job(i: int) -> dict[str, Any]:
    return {
        "jobId": f"otp-{i}",
        "message": {
            "channelType": "FLASHCALL",
            "senderName": "bench",
            "destination": code_destination(i),
            "content": "1234",
        },
    }
