"""Lightning callbacks of difflab."""

from difflab.callbacks.evaluation import BitsPerDim
from difflab.callbacks.samples import SampleGrid

__all__ = ["BitsPerDim", "SampleGrid"]
