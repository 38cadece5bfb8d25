"""The Prometheus endpoint of a running worker, scraped after real traffic."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from devenv.processes import free_port
from tests.contract_cases import BASE, variant
from tests.e2e.conftest import E2E
from tests.e2e.harness import wait_until
from tests.e2e.test_batching import sms_jobs
from tests.sandbox_client import set_faults


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_a_pod_exports_jobs_batches_requests_retries_splits_and_streams(e2e: E2E) -> None:
    port = free_port()
    set_faults(e2e.sandbox, rejectDestinations="^1999", status={"status": 502, "next": 1})
    jobs = sms_jobs(1200)
    jobs[5] = {"jobId": "bad", "message": variant("SMS", destination="19995550000")}
    e2e.producer.enqueue_many([*jobs, {"jobId": "otp", "message": BASE["FLASHCALL"]}])
    e2e.start_worker("pod", pod=True, METRICS_PORT=str(port))
    e2e.outcomes(1201)

    def sample(name: str, **labels: str) -> float:
        return scrape(port).get((name, tuple(sorted(labels.items()))), 0.0)

    wait_until(
        lambda: sample("revicom_jobs_total", channel="SMS", status="accepted") == 1199,
        10,
        "SMS counted",
    )
    assert sample("revicom_jobs_total", channel="SMS", status="rejected") == 1
    assert sample("revicom_jobs_total", channel="FLASHCALL", status="accepted") == 1
    assert sample("revicom_batches_total", channel="SMS") == 2
    assert sample("revicom_batch_size_count", channel="SMS") == 2
    assert sample("revicom_batch_size_sum", channel="SMS") == 1200
    assert sample("revicom_422_splits_total", channel="SMS") >= 1
    assert sample("revicom_api_retries_total", reason="502") == 1
    assert (
        sample("revicom_api_request_seconds_count", endpoint="/api/v1/message", status="422") >= 1
    )
    assert sample("revicom_stream_length", channel="SMS") == 0
    assert sample("revicom_stream_pending", channel="SMS") == 0
    assert sample("revicom_results_length") == 1201
    assert sample("revicom_dead_letters") == 0


def test_a_plain_celery_node_exports_its_own_metrics(e2e: E2E) -> None:
    port = free_port()
    e2e.start_worker(METRICS_PORT=str(port))
    e2e.producer.enqueue_many(sms_jobs(3))
    e2e.outcomes(3)
    key = ("revicom_jobs_total", (("channel", "SMS"), ("status", "accepted")))
    wait_until(lambda: scrape(port).get(key) == 3, 10, "the node's counters")
