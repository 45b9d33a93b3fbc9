"""What the entry points share: where the configs live, and how a bad input is reported."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hydra.errors import InstantiationException
from omegaconf.errors import OmegaConfBaseException

__all__ = ["CONFIG_DIR", "ConfigError", "user_errors", "reported_as_config_error"]

CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "conf")


class ConfigError(ValueError):
    """A bad value given by the user: reported as one line, without a traceback."""


def _root_message(err: BaseException) -> str:
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
        raise ConfigError(_root_message(err)) from err


@contextmanager
def user_errors(program: str) -> Iterator[None]:
    """Print a :class:`ConfigError` as ``program: error: ...`` and exit with status 2 (traceback with HYDRA_FULL_ERROR=1)."""
    try:
        yield
    except ConfigError as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"{program}: error: {err}", file=sys.stderr, flush=True)
        sys.exit(2)
