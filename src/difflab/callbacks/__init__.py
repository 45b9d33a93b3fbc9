"""Lightning callbacks of difflab."""

from difflab.callbacks.evaluation import BitsPerDim, Evaluation, best_checkpoint
from difflab.callbacks.samples import SampleGrid

__all__ = ["BitsPerDim", "Evaluation", "SampleGrid", "best_checkpoint"]
