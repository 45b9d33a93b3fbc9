"""Lightning callbacks of difflab."""

from difflab.callbacks.samples import SampleGrid

__all__ = ["SampleGrid"]
