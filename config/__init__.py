"""Configuration: one Settings object read from environment variables."""

from config.settings import ChannelTuning, Settings, get_settings

__all__ = ["ChannelTuning", "Settings", "get_settings"]
