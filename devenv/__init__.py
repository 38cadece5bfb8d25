"""Local development plumbing: find or start the services a local run needs."""
