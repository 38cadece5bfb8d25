"""Jobs, outcomes and the published JSON Schemas."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from tasks.jobs import InvalidJobError, Job, Outcome, parse_job
from tasks.schemas import SCHEMA_FILES, render
from tests.contract_cases import BASE, variant

ROOT = Path(__file__).resolve().parents[1]


def test_a_bare_message_gets_a_generated_job_id() -> None:
    job = parse_job(variant("SMS"))
    assert uuid.UUID(job.jobId)
    assert job.channel == "SMS"


def test_a_job_keeps_its_callers_job_id() -> None:
    job = parse_job({"jobId": "order-42/otp", "message": variant("FLASHCALL")})
    assert job.jobId == "order-42/otp"
    assert json.loads(job.to_wire()) == {"jobId": "order-42/otp", "message": BASE["FLASHCALL"]}


@pytest.mark.parametrize("job_id", ["", "with space", "x" * 129, "ünïcode", 42])
def test_bad_job_ids_are_refused(job_id: object) -> None:
    with pytest.raises(InvalidJobError) as caught:
        parse_job({"jobId": job_id, "message": variant("SMS")})
    assert [e.path for e in caught.value.errors] == ["jobId"]


def test_error_paths_of_a_bare_message_are_relative_to_it() -> None:
    with pytest.raises(InvalidJobError) as caught:
        parse_job(variant("SMS", content=""))
    assert [str(e) for e in caught.value.errors] == ["content: must not be blank"]


def test_error_paths_of_a_wrapped_message_start_at_message() -> None:
    with pytest.raises(InvalidJobError) as caught:
        parse_job({"jobId": "j1", "message": variant("SMS", content="")})
    assert [str(e) for e in caught.value.errors] == ["message.content: must not be blank"]


@pytest.mark.parametrize("data", [[], "SMS", None, 3])
def test_a_job_must_be_an_object(data: object) -> None:
    with pytest.raises(InvalidJobError, match="must be a JSON object"):
        parse_job(data)


def test_unknown_job_fields_are_refused() -> None:
    with pytest.raises(InvalidJobError) as caught:
        parse_job({"jobId": "j", "message": variant("SMS"), "priority": 1})
    assert [e.path for e in caught.value.errors] == ["priority"]


def test_wire_format_parses_back_to_the_same_job() -> None:
    job = parse_job({"jobId": "j1", "message": variant("WHATSAPP")})
    assert Job.model_validate_json(job.to_wire()) == job


def test_outcome_json_has_every_field() -> None:
    outcome = Outcome(
        jobId="j1",
        status="accepted",
        channelType="SMS",
        destination="14085553911",
        messageUuid="u",
        code=201,
        httpStatus=200,
        attempts=1,
    )
    data = json.loads(outcome.to_wire())
    assert set(data) == {
        "jobId",
        "entryId",
        "status",
        "channelType",
        "destination",
        "messageUuid",
        "code",
        "error",
        "httpStatus",
        "attempts",
        "externalMessageId",
        "segments",
        "finishedAt",
    }
    assert data["finishedAt"].endswith("Z")
    assert Outcome.model_validate_json(outcome.to_wire()) == outcome


@pytest.mark.parametrize("name", sorted(SCHEMA_FILES))
def test_published_schema_files_match_the_models(name: str) -> None:
    committed = (ROOT / "schemas" / name).read_text(encoding="utf-8")
    assert committed == render(SCHEMA_FILES[name]), "run `make schemas` and commit the result"
