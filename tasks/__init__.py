"""The job contract (messages, jobs, outcomes), the producer, and the Celery task definitions."""
