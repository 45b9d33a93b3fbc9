"""What Lightning, logging and the callbacks cost: ``difflab-train``'s steady-state step rate on the main job against
a bare loop doing the same steps.

    .venv/bin/python benchmarks/framework_overhead.py                 # 3 rounds of 300 steps each way
    .venv/bin/python benchmarks/framework_overhead.py --steps 600 --rounds 2 --skip 100

difflab-train runs the main job's config (digits, unet_tiny, batch 128, logging every 50 steps, the rich progress
bar, the CSV logger, LR monitor) for ``--steps`` steps, before its first validation, checkpoint, sample grid and
evaluation (all due at step 600: they are the run's work, not per-step overhead), with a callback that notes the
time at the end of every step. The bare loop builds the same DiffusionModule from the same config and feeds it the
same data module's batches: the loss of ``training_step``, backward, ``configure_gradient_clipping``, AdamW, the LR
schedule and the EMA update (benchmarks/training_step.py's ``DifflabStep``). Each rate is measured over the steps
after the first ``--skip``; the rounds alternate the two, and the medians are compared.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from training_step import DifflabStep

from difflab.builders import build_datamodule, build_module
from difflab.configs import CONFIG_DIR

HERE = Path(__file__).resolve().parent


class StepTimes(pl.Callback):
    """Notes ``time.perf_counter()`` at the end of every training batch; writes them to ``path`` at the end."""

    def __init__(self, path: str) -> None:
        self.path, self.times = path, []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.times.append(time.perf_counter())

    def on_train_end(self, trainer, pl_module) -> None:
        Path(self.path).write_text(json.dumps(self.times))


def rate(times: list[float], skip: int) -> float:
    """Steps per second between the end of step ``skip`` and the end of the last step."""
    return (len(times) - skip) / (times[-1] - times[skip - 1])


def lightning_run(steps: int, threads: int, workdir: Path) -> list[float]:
    """``difflab-train`` (the main job, ``steps`` steps) in a subprocess; the end time of each step."""
    out = workdir / "times.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": str(threads), "DIFFLAB_ROOT": str(workdir)}
    subprocess.run([sys.executable, "-m", "difflab.train", f"trainer.max_steps={steps}",
                    f"hydra.run.dir={workdir / 'run'}", "+callbacks.step_times._target_=framework_overhead.StepTimes",
                    f"+callbacks.step_times.path={out}"],
                   check=True, env=env, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return json.loads(out.read_text())


def bare_run(steps: int) -> list[float]:
    """The same steps without Lightning: the end time of each step."""
    with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
        cfg = compose("train", [])
    pl.seed_everything(cfg.seed, verbose=False)
    data = build_datamodule(cfg)
    data.setup("fit")
    step = DifflabStep(build_module(cfg, data))
    times = []
    batches = iter(data.train_dataloader())
    for _ in range(steps):
        step(next(batches)[0])
        times.append(time.perf_counter())
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--skip", type=int, default=50, help="steps before the measured window")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rates: dict[str, list[float]] = {"difflab-train": [], "bare loop": []}
    for r in range(args.rounds):
        order = ["difflab-train", "bare loop"] if r % 2 == 0 else ["bare loop", "difflab-train"]
        for name in order:
            if name == "bare loop":
                rates[name].append(rate(bare_run(args.steps), args.skip))
            else:
                with tempfile.TemporaryDirectory() as tmp:
                    rates[name].append(rate(lightning_run(args.steps, args.threads, Path(tmp)), args.skip))
    median = {name: statistics.median(values) for name, values in rates.items()}
    print(f"main job steps {args.skip + 1}..{args.steps}, {args.threads} threads, {args.rounds} rounds (median it/s)")
    for name, values in rates.items():
        print(f"{name:<14} {median[name]:6.2f} it/s   rounds: {', '.join(f'{v:.2f}' for v in values)}")
    print(f"difflab-train / bare loop: {median['difflab-train'] / median['bare loop']:.3f}")


if __name__ == "__main__":
    main()
