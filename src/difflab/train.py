"""difflab-train: compose a config with Hydra, build the objects, fit with Lightning.

    difflab-train                                      # U-Net DDPM on scikit-learn digits (the main job)
    difflab-train dataset=moons backbone=mlp experiment=moons
    difflab-train --multirun schedule=linear,cosine,polynomial
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities import rank_zero_info, rank_zero_only

from difflab.builders import build_datamodule, build_module, build_sampler, instantiate_all, to_container
from difflab.callbacks.periodic_scoring import best_values, scoring_history
from difflab.checkpoints import load_checkpoint
from difflab.configs import CONFIG_DIR, refuse_other_presets, task_overrides
from difflab.errors import ConfigError, TrainingStopped, reported_as_config_error, root_message, user_errors
from difflab.loggers import close_loggers
from difflab.resume import config_mismatches, finished_job, resolve_ckpt_path
from difflab.sweeps.overrides import identity_overrides, in_sweep
from difflab.sweeps.status import FAILED, FINISHED, RUNNING, read_status, write_status

__all__ = ["train", "main"]

# The EMA copy of the network stays in eval mode on purpose; Lightning's pytree deprecation notice is internal.
warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode at the start of training.*")
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated.*")


def resume_checkpoint(cfg: DictConfig, run_config: dict[str, Any]) -> str | None:
    """The checkpoint this run resumes from, checked: loadable without running code, difflab's, and made by
    the same model as ``cfg`` asks for. None: a fresh run."""
    path = resolve_ckpt_path(cfg.get("ckpt_path"), cfg.get("resume"), Path(cfg.paths.output_dir),
                             Path(cfg.paths.log_dir) / cfg.task_name, task_overrides(), sweep_job=in_sweep())
    if path is None:
        return None
    mismatches = config_mismatches(load_checkpoint(path), run_config)
    if mismatches:
        raise ConfigError(f"ckpt_path={path!r} was trained with other model settings ({'; '.join(mismatches[:4])}"
                          f"{'; ...' if len(mismatches) > 4 else ''}); "
                          "resume with the checkpoint's settings or start a new run")
    return path


def last_good_checkpoint(trainer: pl.Trainer) -> str:
    """Where the newest complete checkpoint of this run is, for the message of a stopped run."""
    paths = [Path(c.last_model_path or c.best_model_path) for c in trainer.checkpoint_callbacks
             if (c.last_model_path or c.best_model_path)]
    paths = [p for p in paths if p.is_file()]
    if not paths:
        return "none was written"
    newest = max(paths, key=lambda p: p.stat().st_mtime)
    return f"{newest} (step {torch.load(newest, map_location='cpu', weights_only=True)['global_step']})"


def keep_previous_metrics(output_dir: Path) -> None:
    """A run resumed in its own directory: move ``csv/metrics.csv`` to ``csv/metrics.<k>.csv`` (k = 1, 2, ...)
    before Lightning's CSV logger, which deletes an existing file, starts a new one."""
    previous = output_dir / "csv" / "metrics.csv"
    if rank_zero_only.rank != 0 or not previous.is_file():
        return
    k = 1
    while (target := previous.with_name(f"metrics.{k}.csv")).exists():
        k += 1
    previous.rename(target)
    rank_zero_info(f"difflab: the metrics logged before this resume are kept in {target}")


def skipped_as_finished(cfg: DictConfig, output_dir: Path) -> dict[str, Any] | None:
    """``resume=auto`` in a directory that holds this job finished: its ``status.json`` record (the job is skipped,
    its results kept); None otherwise."""
    if cfg.get("resume") != "auto" or cfg.get("ckpt_path") is not None:
        return None
    with reported_as_config_error():
        record = finished_job(output_dir, task_overrides(), cfg.trainer.get("max_steps"), sweep_job=in_sweep())
    if record is not None:
        rank_zero_info(f"difflab: {output_dir} holds this job finished at step {record['step']}: skipped, its results "
                       "kept (resume=auto)")
    return record


def failure_is_recorded(output_dir: Path) -> bool:
    """Whether a sweep job's failure before training goes into ``output_dir``'s ``status.json`` (for the report;
    a single run with bad input writes nothing): yes when it holds no record or an unfinished one of this same job;
    a directory holding another job's run, or this job finished, keeps it."""
    record = read_status(output_dir)
    if record is None:
        return True
    same_job = identity_overrides(record.get("overrides") or []) == identity_overrides(task_overrides())
    return same_job and record.get("status") != FINISHED


def record_failure(trainer: pl.Trainer, output_dir: Path, err: BaseException) -> None:
    """Mark the run failed in its ``status.json``, with the step reached and the error's first line."""
    if trainer.is_global_zero:  # Ctrl-C ends Lightning's fit with SystemExit
        message = root_message(err) if isinstance(err, Exception) else f"interrupted ({type(err).__name__})"
        write_status(output_dir, FAILED, step=trainer.global_step, error=message)


def train(cfg: DictConfig) -> dict[str, float]:
    """Build everything from ``cfg`` (every bad value is reported before work starts), then fit; the job's fate is
    kept in ``<run dir>/status.json``."""
    output_dir = Path(cfg.paths.output_dir)
    done = skipped_as_finished(cfg, output_dir)
    if done is not None:
        return {k: float(v) for k, v in done.get("metrics", {}).items()}
    try:
        return fit(cfg, output_dir)
    except Exception as err:
        if rank_zero_only.rank == 0 and in_sweep() and failure_is_recorded(output_dir):
            write_status(output_dir, FAILED, task=cfg.task_name, overrides=task_overrides(), error=root_message(err))
        raise


def fit(cfg: DictConfig, output_dir: Path) -> dict[str, float]:
    """Build everything from ``cfg``, fit, and return the final logged values."""
    with reported_as_config_error():
        pl.seed_everything(cfg.seed, workers=True, verbose=False)
        run_config = to_container(cfg)
        datamodule = build_datamodule(cfg)
        module = build_module(cfg, datamodule, run_config)  # sized by the data facts, recorded in run_config["data"]
        ckpt_path = resume_checkpoint(cfg, run_config)  # compared with the checkpoint's model and data facts
        build_sampler(cfg.sampler, module.schedule)  # the sampler configs are checked against the schedule now
        if cfg.get("metrics"):
            try:
                build_sampler(cfg.evaluation.sampler, module.schedule)
            except ValueError as err:
                raise ValueError(f"evaluation.{err}" if str(err).startswith("sampler.") else str(err)) from None
        callbacks = instantiate_all(cfg.get("callbacks"))
        for callback in callbacks:  # callbacks that need something of the data say so now, not at their first use
            if hasattr(callback, "check_data"):
                callback.check_data(datamodule)
        loggers = instantiate_all(cfg.get("logger"))
        trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)

    keep_previous_metrics(output_dir)  # a resumed run, or one restarted afresh in its own directory (resume=auto)
    if trainer.is_global_zero:
        output_dir.mkdir(parents=True, exist_ok=True)
        write_status(output_dir, RUNNING, task=cfg.task_name, overrides=task_overrides(),
                     max_steps=cfg.trainer.get("max_steps"), resumed_from=ckpt_path, metrics={})
        OmegaConf.save(OmegaConf.create(run_config), output_dir / "resolved_config.yaml")
        for logger in trainer.loggers:
            logger.log_hyperparams(run_config)
    rank_zero_info(f"difflab: run directory {cfg.paths.output_dir}"
                   + (f", resuming from {ckpt_path}" if ckpt_path else ""))
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    except FloatingPointError as err:
        stopped = TrainingStopped(f"{err}: the run stopped there. "
                                  f"Last good checkpoint: {last_good_checkpoint(trainer)}")
        record_failure(trainer, output_dir, stopped)
        raise stopped from err
    except BaseException as err:
        record_failure(trainer, output_dir, err)
        raise
    finally:
        close_loggers(trainer.loggers)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    if trainer.is_global_zero:
        write_status(output_dir, FINISHED, step=trainer.global_step, metrics=metrics,
                     best=best_values(scoring_history(trainer)))
    return metrics


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Console entry point ``difflab-train``; returns the best value of ``cfg.optimized_metric`` over the run to
    sweepers when set (difflab.sweeps.search)."""
    from difflab.sweeps.search import run_trial
    from difflab.sweeps.submitit import requeued_resume

    with user_errors("difflab-train"):
        refuse_other_presets(cfg, "train")
        requeued_resume(cfg)  # a requeued submitit job continues its own run (status.json of an earlier attempt)
        return run_trial(cfg, train)


if __name__ == "__main__":
    main()
