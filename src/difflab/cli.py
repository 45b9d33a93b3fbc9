"""Transitional re-exports (removed below once every import moved)."""
from difflab.configs import CONFIG_DIR, WritableOutputCheck  # noqa: F401
from difflab.errors import ConfigError, TrainingStopped, reported_as_config_error, user_errors  # noqa: F401
