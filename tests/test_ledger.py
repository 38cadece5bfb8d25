"""The ledger's own calls on a real Redis: what a batch that could not finish gives back, and
the claim replies it understands (finishing is tested with the holders in test_ownership.py)."""

from __future__ import annotations

import pytest
import redis

from tasks.keys import Keys
from worker.ledger import Ledger, _as_claim
from worker.ownership import LeaseTimes


@pytest.fixture
def ledger(redis_client: redis.Redis, keys: Keys) -> Ledger:
    return Ledger(redis_client, keys, ttl_s=86_400, leases=LeaseTimes(1000, 1000))


def test_release_gives_back_only_the_batchs_own_claims_and_ends_its_lease(
    redis_client: redis.Redis, keys: Keys, ledger: Ledger
) -> None:
    """A failed batch's jobIds are claimable at once, while what another live batch holds, and
    what is final, stays as it is: releasing must never free a job for a second send."""
    for batch in ["b-1", "b-2"]:
        redis_client.set(keys.lease(batch), "running", px=60_000)
    assert ledger.claim("b-1", ["mine", "also-mine"]) == ["claimed", "claimed"]
    assert ledger.claim("b-2", ["theirs"]) == ["claimed"]
    redis_client.set(keys.ledger("final"), "accepted:u1")

    ledger.release("b-1", ["mine", "also-mine", "theirs", "final", "never-claimed"])

    assert not redis_client.exists(keys.ledger("mine"), keys.ledger("also-mine"))
    assert redis_client.get(keys.ledger("theirs")) == b"inflight:b-2"
    assert redis_client.get(keys.ledger("final")) == b"accepted:u1"
    assert not redis_client.exists(keys.ledger("never-claimed"))
    assert not redis_client.exists(keys.lease("b-1"))  # its entries are taken over at once
    assert redis_client.get(keys.lease("b-2")) == b"running"
    assert ledger.claim("b-3", ["mine", "theirs"]) == ["claimed", "busy"]


def test_claiming_nothing_asks_nothing(keys: Keys, ledger: Ledger) -> None:
    assert ledger.claim("b-1", []) == []


@pytest.mark.parametrize("reply", [b"claimed", "claimed", b"busy", "done"])
def test_claim_replies_as_bytes_or_text(reply: bytes | str) -> None:
    """A client with `decode_responses` answers text, the default one bytes."""
    text = reply.decode() if isinstance(reply, bytes) else reply
    assert _as_claim(reply) == text


def test_an_unknown_claim_reply_is_refused() -> None:
    """A script and its caller out of step (a half-deployed change) must not be read as a
    claim: the batch fails, and its claims are released, instead of sending on a guess."""
    with pytest.raises(ValueError, match=r"^unexpected claim reply 'maybe'$"):
        _as_claim(b"maybe")


def test_claims_beyond_a_chunk_each_follow_their_jobs_state(
    redis_client: redis.Redis, keys: Keys, ledger: Ledger
) -> None:
    """States are read 500 at a time: each jobId, at a chunk's edges too, gets its own."""
    jobs = [f"j{i}" for i in range(1100)]
    redis_client.set(keys.lease("b-2"), "running", px=60_000)
    redis_client.set(keys.ledger("j0"), "failed")
    redis_client.set(keys.ledger("j499"), "inflight:b-2")  # alive
    redis_client.set(keys.ledger("j500"), "inflight:b-dead")  # its lease is gone
    redis_client.set(keys.ledger("j1099"), "inflight:b-1")  # its own, claimed before
    claims = ledger.claim("b-1", jobs)
    assert (claims[0], claims[499], claims[500], claims[1099]) == ("done", "busy", *["claimed"] * 2)
    assert claims.count("claimed") == 1098
    assert redis_client.get(keys.ledger("j500")) == b"inflight:b-1"
    assert redis_client.get(keys.ledger("j499")) == b"inflight:b-2"


def test_a_jobid_given_twice_is_claimed_once_for_both(
    redis_client: redis.Redis, keys: Keys, ledger: Ledger
) -> None:
    assert ledger.claim("b-1", ["j", "j"]) == ["claimed", "claimed"]
    assert redis_client.get(keys.ledger("j")) == b"inflight:b-1"


def test_release_beyond_a_chunk_gives_back_every_own_claim(
    redis_client: redis.Redis, keys: Keys, ledger: Ledger
) -> None:
    redis_client.set(keys.lease("b-2"), "running", px=60_000)
    mine = [f"m{i}" for i in range(1001)]
    ledger.claim("b-1", mine)
    ledger.claim("b-2", ["theirs"])
    ledger.release("b-1", [*mine[:600], "theirs", *mine[600:]])
    assert redis_client.exists(*(keys.ledger(j) for j in mine)) == 0
    assert redis_client.get(keys.ledger("theirs")) == b"inflight:b-2"
