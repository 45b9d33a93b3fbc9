"""Run several ``difflab-*`` commands in one process, each as its console script runs it: ``sys.argv`` set, Hydra's
global state cleared, standard output and error captured (at the file descriptors), the exit status taken from
``SystemExit``.

:func:`run_commands` starts one process for a list of commands (instead of one per command); they run in order, so
a later command sees the files an earlier one wrote. As a script: ``python cli_driver.py RESULTS < commands.json``
(a JSON list of ``[program, *args]``, program one of train, sample, evaluate) writes one JSON line per command to
the file RESULTS: ``{"code": int, "stdout": str, "stderr": str}``.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO


def entry_point(program: str) -> Callable[[], object]:
    """The console entry point of ``difflab-<program>``."""
    if program == "train":
        from difflab.train import main
    elif program == "sample":
        from difflab.sample import main
    elif program == "evaluate":
        from difflab.evaluate import main
    else:
        raise ValueError(f"unknown program {program!r}")
    return main


@contextlib.contextmanager
def captured_output() -> Iterator[tuple[IO[bytes], IO[bytes]]]:
    """Everything written to this process's standard output and error meanwhile (file descriptors 1 and 2, so the
    output of C code too), in two temporary files."""
    out, err = tempfile.TemporaryFile(), tempfile.TemporaryFile()
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    os.dup2(out.fileno(), 1)
    os.dup2(err.fileno(), 2)
    try:
        yield out, err
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, copy in zip((1, 2), saved):
            os.dup2(copy, fd)
            os.close(copy)


def text(file: IO[bytes]) -> str:
    file.seek(0)
    return file.read().decode(errors="replace")


def run_case(program: str, args: list[str]) -> dict[str, object]:
    """Exit status, standard output and standard error of ``difflab-<program> args``."""
    from hydra.core.global_hydra import GlobalHydra

    main = entry_point(program)
    GlobalHydra.instance().clear()
    sys.argv = [f"difflab-{program}", *args]
    code = 0
    with captured_output() as (out, err):
        try:
            main()
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else 1
        except BaseException:  # noqa: BLE001 - an exception escaping the entry point: shown as the console would
            traceback.print_exc()
            code = 1
    return {"code": code, "stdout": text(out), "stderr": text(err)}


def run_commands(commands: list[list[str]], cwd: Path, env: dict[str, str] | None = None,
                 timeout: float = 900) -> list[subprocess.CompletedProcess]:
    """Run each ``[program, *args]`` of ``commands`` in one new process started in ``cwd`` (``DIFFLAB_ROOT=cwd``,
    as :func:`conftest.run_cli` runs one); one completed process per command."""
    from conftest import cli_env

    handle, name = tempfile.mkstemp(suffix=".jsonl")
    os.close(handle)
    results = Path(name)
    try:
        driver = subprocess.run([sys.executable, __file__, str(results)], input=json.dumps(commands), cwd=cwd,
                                env=cli_env(cwd, env), capture_output=True, text=True, timeout=timeout)
        assert driver.returncode == 0, driver.stderr[-3000:]
        outcomes = [json.loads(line) for line in results.read_text().splitlines()]
    finally:
        results.unlink()
    assert len(outcomes) == len(commands), outcomes
    return [subprocess.CompletedProcess(command, o["code"], o["stdout"], o["stderr"])
            for command, o in zip(commands, outcomes)]


if __name__ == "__main__":
    with open(sys.argv[1], "w") as handle:
        for program, *arguments in json.loads(sys.stdin.read()):
            handle.write(json.dumps(run_case(program, arguments)) + "\n")
            handle.flush()
