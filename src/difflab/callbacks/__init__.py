"""Lightning callbacks of difflab."""

from difflab.callbacks.best_checkpoint import best_checkpoint, monitor_for
from difflab.callbacks.periodic_scoring import PeriodicScoring
from difflab.callbacks.progress import StepProgressBar
from difflab.callbacks.run_summary import RunSummary
from difflab.callbacks.samples import SampleGrid

__all__ = ["PeriodicScoring", "RunSummary", "SampleGrid", "StepProgressBar", "best_checkpoint", "monitor_for"]
