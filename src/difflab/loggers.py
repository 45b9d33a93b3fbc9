"""Logger factories whose behaviour depends on the machine, not only on the config."""

from __future__ import annotations

import netrc
import os
from pathlib import Path
from typing import Any

from pytorch_lightning.loggers import WandbLogger

__all__ = ["wandb_configured", "make_wandb_logger"]


def wandb_configured() -> bool:
    """True when the user has set W&B up for online logging (an API key in the environment or ~/.netrc,
    or ``WANDB_MODE=online``); False means runs are logged offline and can be synced later."""
    mode = os.environ.get("WANDB_MODE", "").lower()
    if mode in ("offline", "disabled", "dryrun"):
        return False
    if mode == "online" or os.environ.get("WANDB_API_KEY"):
        return True
    netrc_path = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        hosts = netrc.netrc(netrc_path).hosts if netrc_path.is_file() else {}
    except (netrc.NetrcParseError, OSError):
        return False
    base = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("://")[-1].split("/")[0]
    return base in hosts


def make_wandb_logger(offline: bool | None = None, **kwargs: Any) -> WandbLogger:
    """A :class:`WandbLogger`; ``offline=None`` (the default) means offline unless :func:`wandb_configured`."""
    if offline is None:
        offline = not wandb_configured()
    return WandbLogger(offline=offline, **kwargs)
