"""difflab-evaluate: score a checkpoint with the metrics group under any sampler; write results.json/.csv.

    difflab-evaluate ckpt_path=outputs/train/runs/<run>/checkpoints/last.ckpt
    difflab-evaluate ckpt_path=... metrics=[fid,kid] sampler=ddim sampler.steps=10,20,50 --multirun

Each run writes ``results.json`` and ``results.csv`` (one row: every setting that matters and the values)
into its directory; under ``--multirun`` the sweep directory also collects all rows in the same two files.
The job's fate (running, finished, failed with its error) is kept in ``status.json`` beside them.
"""

from __future__ import annotations

import csv
import fcntl
import json
import time
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import Logger, WandbLogger

from difflab.builders import build_datamodule, build_sampler, instantiate_all, to_container
from difflab.checkpoints import load_checkpoint, module_from_checkpoint
from difflab.configs import CONFIG_DIR, refuse_other_presets, task_overrides
from difflab.errors import ConfigError, reported_as_config_error, root_message, user_errors
from difflab.loggers import close_loggers
from difflab.reporting.origin import TRAINED_CONFIG
from difflab.sample import resolve_device
from difflab.scoring import SampleScorer
from difflab.sweeps.overrides import in_sweep, is_plumbing, override_key
from difflab.sweeps.status import FAILED, FINISHED, RUNNING, read_status, write_status
from difflab.utils.metric_names import short_name

__all__ = [
    "evaluate", "evaluate_recorded", "finished_evaluation", "chosen_metrics", "reference_column", "write_results",
    "main",
]


def _flat(prefix: str, node: Any) -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            if not str(key).startswith("_"):
                out.update(_flat(f"{prefix}.{key}" if prefix else str(key), value))
        return out
    return {prefix: json.dumps(node) if isinstance(node, list) else node}


def write_results(rows: list[dict[str, Any]], directory: Path) -> None:
    """``results.json`` (a list of rows) and ``results.csv`` (the union of their columns) in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
    columns = list(dict.fromkeys(k for row in rows for k in row))
    with open(directory / "results.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def reference_column(splits: list[str]) -> str:
    """The row's ``reference_split``: the split (``train``), or the JSON list of several (``["train", "val"]``, the
    values against val being the ``*_refval`` columns)."""
    return splits[0] if len(splits) == 1 else json.dumps(splits)


def chosen_metrics(cfg: DictConfig, train_cfg: DictConfig, overrides: list[str]) -> DictConfig:
    """What to score: ``metrics=[...]`` when given, else the checkpoint's metrics with their trained settings,
    changed by any ``metrics.<name>.<key>=...`` override (the composed ``cfg.metrics`` holds every metric's
    settings, so such an override needs no ``metrics=[...]``)."""
    keys = [o.split("=", 1)[0].lstrip("+~") for o in overrides]
    if "metrics" in keys:
        return cfg.metrics
    metrics = OmegaConf.create(OmegaConf.to_container(train_cfg.get("metrics") or {}, resolve=True))
    for key in keys:
        if not key.startswith("metrics."):
            continue
        name = key.split(".")[1]
        if name not in metrics:
            raise ConfigError(f"{key} changes {name}, which the checkpoint does not score "
                              f"({sorted(metrics) or 'nothing'}); "
                              f"choose the metrics too, e.g. metrics=[{','.join([*metrics, name])}]")
        OmegaConf.update(metrics, key[len("metrics."):], OmegaConf.select(cfg, key), merge=True)
    return metrics


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Score ``cfg.ckpt_path``; return the result row (also written to the run directory)."""
    with reported_as_config_error():
        checkpoint = load_checkpoint(cfg.ckpt_path)
        module, train_cfg = module_from_checkpoint(checkpoint)
        metrics = chosen_metrics(cfg, train_cfg, task_overrides())
        features = cfg.get("features") or train_cfg.get("features")
        if not metrics:
            raise ConfigError("no metrics to compute: choose some, e.g. metrics=[fid] (the checkpoint names none)")
        merged = train_cfg.copy()  # the sampler node may refer to the trained schedule (${schedule.num_timesteps})
        OmegaConf.update(merged, "sampler", OmegaConf.to_container(cfg.sampler, resolve=False), merge=False)
        sampler_cfg = merged.sampler
        build_sampler(sampler_cfg, module.schedule)  # checked against the schedule now
        datamodule = build_datamodule(train_cfg)
        metric_options = OmegaConf.to_container(metrics, resolve=True)
        evaluator = SampleScorer(
            metrics=metric_options, features=OmegaConf.to_container(features, resolve=True) if features else None,
            sampler=OmegaConf.to_container(sampler_cfg, resolve=True),
            reference=OmegaConf.to_container(cfg.reference, resolve=True), config_key="reference",
            dataset=OmegaConf.to_container(train_cfg.dataset, resolve=True),
            seed=cfg.seed, batch_size=cfg.batch_size, use_ema=cfg.use_ema, class_label=cfg.class_label,
            guidance_scale=cfg.guidance_scale,
        )
        evaluator.check_data(datamodule)
        module.to(resolve_device(cfg.device))
        loggers = instantiate_all(cfg.get("logger"))  # logger=wandb: one W&B run per job (job type evaluate)
    start = time.perf_counter()
    values = evaluator.score(module, datamodule)
    row: dict[str, Any] = {
        "ckpt_path": str(cfg.ckpt_path), "step": int(checkpoint.get("global_step", -1)),
        "dataset": train_cfg.dataset.get("name"), "features": (features or {}).get("name") if features else None,
        "reference_split": reference_column(evaluator.splits), "seed": cfg.seed, "use_ema": cfg.use_ema,
        "class_label": cfg.class_label, "guidance_scale": cfg.guidance_scale,
        **_flat("sampler", OmegaConf.to_container(sampler_cfg, resolve=True)), "nfe": evaluator.nfe,
        **{f"{m}.num_samples": o.get("num_samples") for m, o in metric_options.items() if "num_samples" in o},
        **{short_name(k): v for k, v in values.items()}, "seconds": round(time.perf_counter() - start, 3),
        "metric_names": json.dumps(sorted(values)),
    }
    out = Path(cfg.paths.output_dir)
    write_results([row], out)
    OmegaConf.save(train_cfg, out / TRAINED_CONFIG)  # the report's train.<key> without the run dir
    log_result(loggers, row, values, logged_config(cfg, sampler_cfg) if loggers else {})
    if in_sweep():
        append_to_sweep_results(row, Path(HydraConfig.get().sweep.dir))
    print("difflab-evaluate: " + ", ".join(f"{k} = {v:.4f}" for k, v in values.items()) + f" -> {out / 'results.json'}")
    return row


def finished_evaluation(cfg: DictConfig, output_dir: Path) -> dict[str, Any] | None:
    """``resume=auto`` in a directory that holds this very evaluation finished (the same overrides in any order,
    Hydra's and the loggers' aside; the checkpoint is known by its path): its result row, so the job is skipped; None
    otherwise. Refused: another ``resume`` value; a sweep job whose directory holds another evaluation (the sweep's
    axes changed); without ``resume=auto``, a sweep job whose directory holds a finished evaluation (a re-run of a
    fixed ``hydra.sweep.dir`` would overwrite it and add its row to the sweep's results again)."""
    resume = cfg.get("resume")
    if resume not in (None, False, "auto"):
        raise ConfigError(f"resume={resume!r} is not accepted; use auto (skip the jobs already finished) or null")
    record = read_status(output_dir)
    if record is None:
        return None
    if resume != "auto":
        if in_sweep() and record.get("status") == FINISHED:
            raise ConfigError(f"{output_dir} holds a finished evaluation; add resume=auto to skip it (and run only "
                              "what is missing), or give the sweep a new hydra.sweep.dir")
        return None
    wanted = sorted(o for o in task_overrides() if not is_plumbing(override_key(o)))
    recorded = sorted(o for o in record.get("overrides") or [] if not is_plumbing(override_key(o)))
    if recorded != wanted:
        if in_sweep():
            raise ConfigError(f"{output_dir} holds an evaluation of other overrides {recorded}, not {wanted}; re-run "
                              "the same command (same sweep axes, in the same order) or give the sweep a new "
                              "hydra.sweep.dir")
        return None
    results = output_dir / "results.json"
    if record.get("status") != FINISHED or not results.is_file():
        return None
    return json.loads(results.read_text())[0]


def evaluate_recorded(cfg: DictConfig) -> dict[str, Any]:
    """:func:`evaluate` with the job's fate kept in ``<run dir>/status.json`` (read by difflab-report); with
    ``resume=auto`` a job already finished in its directory is skipped (its row kept, not appended again)."""
    out = Path(cfg.paths.output_dir)
    done = finished_evaluation(cfg, out)
    if done is not None:
        print(f"difflab-evaluate: {out} holds this evaluation finished: skipped, its results kept (resume=auto)")
        return done
    write_status(out, RUNNING, task=cfg.task_name, overrides=task_overrides(), metrics={})
    try:
        row = evaluate(cfg)
    except Exception as err:
        write_status(out, FAILED, error=root_message(err))
        raise
    names = json.loads(row["metric_names"])
    write_status(out, FINISHED, step=row["step"], metrics={name: row[short_name(name)] for name in names})
    return row


def append_to_sweep_results(row: dict[str, Any], sweep: Path) -> None:
    """Add ``row`` to the sweep's ``results.json``/``.csv``, under a lock: jobs run side by side (joblib, submitit)
    must not lose each other's rows."""
    with open(sweep / ".results.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        previous = json.loads((sweep / "results.json").read_text()) if (sweep / "results.json").is_file() else []
        write_results([*previous, row], sweep)


def logged_config(cfg: DictConfig, sampler_cfg: DictConfig) -> dict[str, Any]:
    """The job's config as its loggers record it: resolved, with the sampler as resolved against the checkpoint's
    config (``sampler=ddpm`` takes its steps from the trained ``schedule.num_timesteps``)."""
    logged = cfg.copy()
    OmegaConf.update(logged, "sampler", OmegaConf.to_container(sampler_cfg, resolve=True), merge=False)
    return to_container(logged)


def log_result(loggers: list[Logger], row: dict[str, Any], values: dict[str, float], config: dict[str, Any]) -> None:
    """Send the job's config and values to its loggers (at the checkpoint's step; into a W&B run's summary too),
    then finish them, so that the next job of a sweep logs into a run of its own."""
    value_columns = {short_name(name) for name in values}
    try:
        for logger in loggers:
            logger.log_hyperparams({**config, "result": {k: v for k, v in row.items() if k not in value_columns}})
            logger.log_metrics(values, step=max(row["step"], 0))
            if isinstance(logger, WandbLogger):
                logger.experiment.summary.update(values)
            logger.save()
    finally:
        close_loggers(loggers)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="evaluate")
def main(cfg: DictConfig) -> float | None:
    """Console entry point ``difflab-evaluate``; returns the first metric's value (for sweepers)."""
    with user_errors("difflab-evaluate"):
        refuse_other_presets(cfg, "evaluate")
        row = evaluate_recorded(cfg)
    names = json.loads(row["metric_names"])  # the row's columns carry the short names
    return row[short_name(names[0])] if names else None


if __name__ == "__main__":
    main()
