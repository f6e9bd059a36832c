"""Notebooks: committed clean, built to the course's pattern, one exercise each.

These tests read each notebook as committed (git's index), not the working copy: JupyterLab saves a
learner's outputs into the file, and that must not fail the learner's `make test`.
"""
import json
import re
import subprocess
from pathlib import Path

import pytest

from ebookstore.course import grading

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def cells(path):
    """The notebook's cells as committed (or as on disk, outside a git checkout)."""
    root = path.parent.parent
    shown = subprocess.run(["git", "show", f":{path.relative_to(root)}"], cwd=root, capture_output=True, text=True)
    return json.loads(shown.stdout if shown.returncode == 0 else path.read_text())["cells"]


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 6


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs_or_execution_counts(path):
    dirty = [i for i, c in enumerate(cells(path))
             if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count") is not None)]
    assert dirty == [], f"{path.name}: cells {dirty} carry outputs; clear them before committing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_follows_the_course_pattern(path):
    all_cells = cells(path)
    first = "".join(all_cells[0]["source"])
    assert "**Goal:**" in first and "**Time:**" in first, "opens with its goal and a time estimate"
    first_code = next("".join(c["source"]) for c in all_cells if c["cell_type"] == "code")
    assert "start_notebook(" in first_code or "environment_report(" in first_code, "an environment cell"
    code = ["".join(c["source"]) for c in all_cells if c["cell_type"] == "code"]
    assert "clean_up(nb)" in code[-1], "ends with a clean-up cell"
    assert "## Recap" in "".join(all_cells[-1]["source"]), "and a recap"
    number = path.stem[:2]
    if f"ex{number}" in grading.EXERCISES:
        assert any(f'check("ex{number}")' in c for c in code), "a check cell for its exercise"
        assert grading.EXERCISES[f"ex{number}"] == f"ex{path.stem}", "exercise file named after the notebook"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_broad_kills(path):
    text = "\n".join("".join(c["source"]) for c in cells(path) if c["cell_type"] == "code")
    assert not re.search(r"\b(pkill|killall)\b[^\n]*\b(python|rq|redis|redis-server)\b(?![.\w-])", text)
