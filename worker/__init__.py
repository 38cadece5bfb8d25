"""Everything that runs inside a worker pod: the Celery app, the batcher, the sender."""
