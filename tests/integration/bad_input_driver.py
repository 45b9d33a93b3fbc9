"""Run ``difflab-train`` once per case in this one process, each as the console script runs it: ``sys.argv`` set,
Hydra's global state cleared, standard error captured and the exit status taken from ``SystemExit``.

Used by test_bad_inputs.py as ``python bad_input_driver.py < cases.json`` (a JSON list of argument lists): one
process start instead of one per case. Prints one JSON line per case: ``{"code": int, "stderr": str}``.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import traceback

from hydra.core.global_hydra import GlobalHydra

from difflab.train import main


def run_case(args: list[str]) -> tuple[int, str]:
    """Exit status and standard error of ``difflab-train args``."""
    GlobalHydra.instance().clear()
    sys.argv = ["difflab-train", *args]
    captured = io.StringIO()
    code = 0
    with contextlib.redirect_stderr(captured):
        try:
            main()
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else 1
        except BaseException:  # noqa: BLE001 - an exception escaping the entry point: shown as the console would
            traceback.print_exc()
            code = 1
    return code, captured.getvalue()


if __name__ == "__main__":
    for case in json.loads(sys.stdin.read()):
        status, stderr = run_case(case)
        print(json.dumps({"code": status, "stderr": stderr}), flush=True)
