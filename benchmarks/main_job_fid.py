"""Run the main job and print what its FID means: the real-vs-real floor, the ladder of bad samples, the
score of each checkpoint, the class spread of the final samples and the share of wall time spent evaluating.

    .venv/bin/python benchmarks/main_job_fid.py                 # runs `difflab-train` (about 3 minutes), then scores
    .venv/bin/python benchmarks/main_job_fid.py --run-dir DIR   # score an existing run of the main job instead

Every FID here uses the shipped digits extractor against the whole training split (1,437 images), as the
training callback does; generated sets are n = 1000, drawn with the evaluation sampler (DPM-Solver++(2M), 20 steps).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from difflab.checkpoints import load_checkpoint, module_from_checkpoint
from difflab.data import DigitsDataModule
from difflab.metrics import build_feature_extractor, frechet_distance, gaussian_statistics
from difflab.samplers import make_sampler

N = 1000


def run_main_job(run_dir: Path) -> float:
    """``difflab-train`` with its defaults into ``run_dir``; returns the wall time in seconds."""
    start = time.perf_counter()
    subprocess.run([str(Path(sys.executable).with_name("difflab-train")), f"hydra.run.dir={run_dir}"], check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, default=None)
    args = parser.parse_args()
    wall = None
    run_dir = args.run_dir
    if run_dir is None:
        run_dir = Path("outputs/bench/main_job") / time.strftime("%Y-%m-%d_%H-%M-%S")
        wall = run_main_job(run_dir)

    torch.manual_seed(0)
    data = DigitsDataModule()
    data.setup()
    (x_train, y_train), (x_val, _) = data.train_dataset.tensors, data.val_dataset.tensors
    extractor = build_feature_extractor("digits")
    reference = gaussian_statistics(extractor(x_train))

    def fid(x: torch.Tensor) -> float:
        return frechet_distance(*gaussian_statistics(extractor(x.clamp(-1, 1))), *reference)

    g = torch.Generator().manual_seed(0)
    rows: list[tuple[str, float]] = [
        ("real: 360 held-out images", fid(x_val)),
        (f"real: n={N} bootstrap of the 360 held-out images", fid(x_val[torch.randint(len(x_val), (N,), generator=g)])),
        (f"uniform noise, n={N}", fid(torch.rand(N, 1, 8, 8, generator=g) * 2 - 1)),
        (f"one class (threes), n={N}",
         fid(x_train[y_train == 3][torch.randint(int((y_train == 3).sum()), (N,), generator=g)])),
    ]
    kernel = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]) / 16
    rows.append(("held-out images blurred (3x3 binomial)",
                 fid(F.conv2d(F.pad(x_val, (1,) * 4, mode="replicate"), kernel[None, None]))))

    checkpoints = sorted((run_dir / "checkpoints").glob("step_*.ckpt")) + [run_dir / "checkpoints" / "last.ckpt"]
    final_samples, seen = None, set()
    for path in checkpoints:
        checkpoint = load_checkpoint(path)
        if checkpoint["global_step"] in seen:  # last.ckpt of a run that ended on a periodic checkpoint
            continue
        seen.add(checkpoint["global_step"])
        module, _ = module_from_checkpoint(checkpoint)
        sampler = make_sampler("dpmpp_2m", schedule=module.schedule, steps=20, timestep_spacing="trailing")
        samples = torch.cat([module.sample(sampler, 500, seed=0, start_index=i) for i in range(0, N, 500)])
        rows.append((f"model at step {checkpoint['global_step']} ({path.name}), dpmpp_2m 20 steps", fid(samples)))
        final_samples = samples

    width = max(len(name) for name, _ in rows)
    print(f"{'what':<{width}}  FID (digits-lenet)")
    for name, value in rows:
        print(f"{name:<{width}}  {value:8.2f}")

    counts = torch.bincount(extractor.logits(final_samples.clamp(-1, 1)).argmax(1), minlength=10)
    print("final samples by predicted class:", counts.tolist(),
          f"(smallest share {counts.min().item() / N:.3f}, half a share is 0.050)")

    record = json.loads((run_dir / "evaluation.json").read_text())
    history = ", ".join(f"step {step}: {list(values.values())[0]:.2f}" for step, values in record["history"])
    print(f"logged during training: {history}")
    if wall is not None:
        spent = record["evaluation_seconds"]
        print(f"wall time {wall:.1f} s, of which evaluation {spent:.1f} s ({100 * spent / wall:.1f}%)")
    print(f"run directory: {run_dir}")


if __name__ == "__main__":
    main()
