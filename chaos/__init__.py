"""The chaos suite (`make chaos`): faults injected into a real pipeline on 127.0.0.1."""
