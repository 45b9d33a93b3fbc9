"""How a bad input or a detected fault is reported: one line, no traceback, a distinct exit status."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from hydra.errors import InstantiationException
from omegaconf.errors import OmegaConfBaseException

__all__ = ["ConfigError", "TrainingStopped", "reported_as_config_error", "user_errors"]


class ConfigError(ValueError):
    """A bad value given by the user: reported as one line, without a traceback (exit status 2)."""


class TrainingStopped(RuntimeError):
    """A run that stopped on a fault it detected (a non-finite loss): one line, exit status 1."""


def root_message(err: BaseException) -> str:
    """The innermost cause of ``err`` (Hydra wraps instantiation errors), with the config key it came from."""
    key = None
    while isinstance(err, InstantiationException) and err.__cause__ is not None:
        key = getattr(err, "full_key", None) or key
        err = err.__cause__
    msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return f"{msg} (config key: {key})" if key and key not in msg else msg


@contextmanager
def reported_as_config_error() -> Iterator[None]:
    """Turn the ValueErrors/TypeErrors of building objects from the config into :class:`ConfigError`."""
    try:
        yield
    except ConfigError:
        raise
    except (ValueError, TypeError, InstantiationException, OmegaConfBaseException, FileNotFoundError) as err:
        raise ConfigError(root_message(err)) from err


@contextmanager
def user_errors(program: str) -> Iterator[None]:
    """Print a :class:`ConfigError` or :class:`TrainingStopped` as ``program: error: ...`` and exit with status
    2 (bad input) or 1 (stopped run); ``HYDRA_FULL_ERROR=1`` shows the traceback instead."""
    try:
        yield
    except (ConfigError, TrainingStopped) as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"{program}: error: {err}", file=sys.stderr, flush=True)
        sys.exit(2 if isinstance(err, ConfigError) else 1)
