"""checklist.md covers the chapter's checklist with working links and checks; README agrees with the Procfile."""
import re

from ebookstore.config import PROJECT_ROOT
from ebookstore.course import grading
from ebookstore.runtime import procfile

SEED_CHECKLIST = [  # the chapter's checklist, in its words
    "Explain why background jobs are important", "Set up and configure", "Create and enqueue background jobs",
    "Use `ps`, `grep`, `kill`, and `pkill` commands confidently", "Find and kill processes using specific ports",
    "Understand the difference between SIGTERM and SIGKILL", "Configure job queues and priorities",
    "Handle job failures and retries",
]


def test_checklist_covers_every_item_with_a_link_and_a_check():
    text = (PROJECT_ROOT / "checklist.md").read_text()
    rows = [line for line in text.splitlines() if re.match(r"^\| \d+ \|", line)]
    assert len(rows) == len(SEED_CHECKLIST)
    for item, row in zip(SEED_CHECKLIST, rows):
        assert item in row, item
        links = re.findall(r"\]\((notebooks/[^)]+)\)", row)
        assert links and all((PROJECT_ROOT / link).exists() for link in links), row
        exercises = re.findall(r"ex\d\d", row.split("|")[-2])
        assert exercises and all(e in grading.EXERCISES for e in exercises), row


def test_checklist_links_every_notebook_and_exercise():
    text = (PROJECT_ROOT / "checklist.md").read_text()
    for notebook in sorted((PROJECT_ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        if notebook.name != "00_start_here.ipynb":
            assert f"(notebooks/{notebook.name})" in text, notebook.name
    for exercise in grading.EXERCISES:
        assert f"check {exercise}" in text or f" {exercise}`" in text or f" {exercise} " in text, exercise


def test_readme_and_pyproject_agree_on_the_python_version():
    readme = (PROJECT_ROOT / "README.md").read_text()
    pyproject = (PROJECT_ROOT / "pyproject.toml").read_text()
    wanted = re.search(r'requires-python = ">=(3\.\d+)"', pyproject).group(1)
    assert f"Python {wanted} or newer" in readme


def test_readme_documents_what_the_procfile_runs():
    assert procfile.disagreements() == []
    assert set(procfile.entries()) == {"redis", "worker", "cron", "relay", "web", "mail"}


def test_readme_has_exactly_the_two_commands():
    readme = (PROJECT_ROOT / "README.md").read_text()
    assert "make lab" in readme and "make test" in readme
    assert "make test" in (PROJECT_ROOT / ".ci" / "run").read_text()
