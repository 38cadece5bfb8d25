"""The Celery app: `celery -A worker.app worker` starts a worker pod.

Redis is the broker (every key under `{prefix}:celery:`); no result backend, since outcomes go
to the results stream. Task events are on so Flower sees every batch.
"""

from __future__ import annotations

from celery import Celery
from kombu import Queue

from config import get_settings
from tasks.channels import BULK_QUEUE, OTP_QUEUE
from tasks.keys import Keys
from worker.batcher import BatcherStep
from worker.metrics_step import MetricsStep

settings = get_settings()
keys = Keys(settings.dispatch_key_prefix)

app = Celery("revicom_dispatch", broker=settings.redis_url, include=["tasks.send_batch"])
app.conf.update(
    broker_transport_options={"global_keyprefix": keys.celery},
    broker_connection_retry_on_startup=True,
    task_queues=(Queue(OTP_QUEUE), Queue(BULK_QUEUE)),
    task_default_queue=BULK_QUEUE,
    task_serializer="json",
    accept_content=["json"],
    task_ignore_result=True,
    # Recovery of a lost batch is the job streams' business (pending entries are reclaimed),
    # so a task is acknowledged when it starts and never redelivered by the broker.
    task_acks_late=False,
    worker_prefetch_multiplier=1,
    worker_send_task_events=True,
    task_send_sent_event=True,
    # A batch is bounded by its retries; past this it is stuck and its process is replaced.
    task_time_limit=int(settings.retry_max_seconds + 2 * settings.send_timeout_s + 60),
)
app.steps["worker"].add(BatcherStep)
app.steps["worker"].add(MetricsStep)
