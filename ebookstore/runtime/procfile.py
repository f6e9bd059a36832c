"""The Procfile and the README's table of processes: read both, and check they agree."""
from __future__ import annotations

import re
import shlex

from ebookstore.config import PROJECT_ROOT


def entries(path=PROJECT_ROOT / "Procfile") -> dict[str, str]:
    """{process name: command} of a Procfile (comments and blank lines skipped)."""
    found = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_-]+):\s*(.+)$", line)
        if match:
            found[match.group(1)] = match.group(2)
    return found


def readme_commands(path=PROJECT_ROOT / "README.md") -> dict[str, str]:
    """{process name: 'start it alone' command} from the README's table of processes."""
    found = {}
    for line in path.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[2].startswith("`"):
            found[cells[0]] = cells[2].split("`")[1]
    return found


def _words(command: str) -> list[str]:
    command = re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", command)   # ${VAR:-default} -> default
    command = re.sub(r"\[[^\]]*\]", "", command)               # [--optional] parts of the README
    return [w for w in shlex.split(command) if not re.match(r"^[A-Z_]+=", w)]  # drop VAR=value


def disagreements() -> list[str]:
    """Processes whose README command is not what the Procfile runs (empty when they agree)."""
    procfile, readme = entries(), readme_commands()
    problems = [f"{name}: in the Procfile, not in the README" for name in procfile if name not in readme]
    for name, command in procfile.items():
        if name in readme and not set(_words(readme[name])) <= set(_words(command)):
            problems.append(f"{name}: README says `{readme[name]}`, the Procfile runs `{command}`")
    return problems
