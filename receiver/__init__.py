"""The callback receiver: its own process kind (`revicom-dispatch callbacks`), scaled apart."""
