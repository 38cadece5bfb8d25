"""The Celery app: `celery -A worker.app worker` starts a worker pod.

Redis is the broker (every key under `{prefix}:celery:`); no result backend, since outcomes go
to the results stream. Task events are on so Flower sees every batch.

A node outlives Redis trouble: it retries the broker connection for as long as Redis is down
(a restart, a failover), and an error reply from Redis (OOM under `maxmemory` with
`noeviction`) restarts its consumer instead of ending the node.
"""

from __future__ import annotations

from celery import Celery
from kombu import Queue

from config import get_settings
from tasks.channels import BULK_QUEUE, OTP_QUEUE
from tasks.keys import Keys
from worker.balance import BalanceStep
from worker.batcher import BatcherStep, BrokerReconnectStep
from worker.metrics_step import MetricsStep
from worker.poller import PollerStep

settings = get_settings()
keys = Keys(settings.dispatch_key_prefix)

app = Celery("revicom_dispatch", broker=settings.redis_url, include=["tasks.send_batch"])
app.conf.update(
    broker_transport_options={
        "global_keyprefix": keys.celery,
        # No unacknowledged-message bookkeeping in Redis: with it every message received is
        # a MULTI (ZADD + HSET) that Redis at maxmemory refuses after BRPOP has already popped
        # the message, so the task was lost and the refusal (OutOfMemoryError) ended the
        # consumer and its node. Tasks are acknowledged when they start and never redelivered
        # by the broker (see task_acks_late), so the bookkeeping bought nothing: a batch whose
        # task is lost is let go by its batcher (QUEUED_BATCH_TIMEOUT_S) or, with that batcher
        # gone, when its lease lapses, and its entries are batched again.
        "ack_emulation": False,
    },
    # Redis restarts and failovers: wait for the broker as long as it takes, at startup and
    # after a lost connection (Celery's default gives up after 100 attempts, ~45 min, and the
    # node exits).
    broker_connection_retry_on_startup=True,
    broker_connection_retry=True,
    broker_connection_max_retries=None,
    # An error reply from Redis in the consumer (OutOfMemoryError from a control reply while
    # Redis is at maxmemory, say) restarts the consumer like a lost connection; by default it
    # is an "unrecoverable error" that ends the node.
    broker_channel_error_retry=True,
    # Celery 6's default, and nothing to cancel here (no late acks): it only keeps a
    # deprecation warning out of the log at every reconnection.
    worker_cancel_long_running_tasks_on_connection_loss=True,
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
    # No task_time_limit: a batch's requests all start before its deadline (RETRY_MAX_SECONDS)
    # and each ends within its timeouts, while publishing its outcomes must wait out a Redis
    # outage however long it lasts: a limit would kill a batch that has sent and not yet
    # published, and its jobs would be sent again.
)
app.steps["worker"].add(BatcherStep)
app.steps["consumer"].add(BrokerReconnectStep)
app.steps["worker"].add(MetricsStep)
app.steps["worker"].add(PollerStep)
app.steps["worker"].add(BalanceStep)
