"""Every notebook in notebooks/ runs top to bottom at tiny settings, its asserts included."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))

# Tiny settings: (old, new) replacements in each notebook's first code cell, where it defines its sizes.
TINY_SETTINGS: dict[str, list[tuple[str, str]]] = {
    "schedules_and_samplers": [("NUM_SAMPLES = 20000", "NUM_SAMPLES = 2000")],
    "forward_process_and_schedules": [("TINY = False", "TINY = True"), ("NUM_DRAWS = 20000", "NUM_DRAWS = 400")],
    "two_moons_end_to_end": [
        ("TINY = False", "TINY = True"),
        ("TRAIN_STEPS = 1500", "TRAIN_STEPS = 30"),
        ("NUM_SAMPLES = 1000", "NUM_SAMPLES = 200"),
        ("SAMPLE_STEPS = 1000", "SAMPLE_STEPS = 100"),
    ],
    "samplers_side_by_side": [
        ("TINY = False", "TINY = True"),
        ("TRAIN_STEPS = 600", "TRAIN_STEPS = 3"),
        ("NUM_SAMPLES = 500", "NUM_SAMPLES = 100"),
        ("NFES = (5, 10, 20, 50)", "NFES = (5, 10)"),
        ("DDPM_STEPS = 1000", "DDPM_STEPS = 50"),
    ],
}


def test_every_notebook_has_tiny_settings():
    assert sorted(TINY_SETTINGS) == sorted(p.stem for p in NOTEBOOKS), (
        "each notebook in notebooks/ needs its tiny settings in TINY_SETTINGS (and each entry a notebook)")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path):
    nb = nbformat.read(path, as_version=4)
    assert any("assert " in cell.source for cell in nb.cells if cell.cell_type == "code"), (
        f"{path.name} checks none of the numbers it shows")
    first = next(cell for cell in nb.cells if cell.cell_type == "code")
    for old, new in TINY_SETTINGS.get(path.stem, []):
        # a setting renamed in the notebook must fail here, not run the notebook at full size
        assert old in first.source, f"{path.name}: its first code cell no longer contains {old!r}"
        first.source = first.source.replace(old, new)
    NotebookClient(nb, timeout=300, kernel_name="python3").execute(cwd=str(path.parent))
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
