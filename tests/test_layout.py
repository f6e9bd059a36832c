"""The tree shows the architecture: the store, its runtime, the course — and imports only go one way.

Every `import` in the package is read from the source (those inside functions
too), so an import added anywhere that closes a circle, or makes the store
depend on the course, fails here.
"""
import ast
import importlib.util
import json
import re

import pytest

from ebookstore.config import PACKAGE_DIR, PROJECT_ROOT

PARTS = ("ebookstore.course", "ebookstore.runtime")


def _module_name(path) -> str:
    parts = list(path.relative_to(PROJECT_ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _exists(name: str) -> bool:
    path = PROJECT_ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def _imports(path) -> set[str]:
    """The ebookstore modules that the module at `path` imports, anywhere in its body."""
    name, found = _module_name(path), set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if _exists(sub) else base)
    return {m for m in found if m == "ebookstore" or m.startswith("ebookstore.")}


def _graph() -> dict[str, set[str]]:
    return {_module_name(p): _imports(p) for p in sorted(PACKAGE_DIR.rglob("*.py"))}


def test_the_graph_is_read_from_every_module():
    graph = _graph()
    assert {"ebookstore.jobs", "ebookstore.runtime.stack", "ebookstore.course.grading",
            "ebookstore.course.checks.ex04"} <= set(graph)
    assert "ebookstore.course.grading" in graph["ebookstore.course.proctor"]  # `from ebookstore.course import grading`
    assert "ebookstore.runtime.stack" in graph["ebookstore.course.notebook"]


def _cycles(graph):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph.get(v, ()):
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_module_imports_one_that_imports_it_back():
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def _part(module: str) -> str:
    return next((p for p in PARTS if module == p or module.startswith(p + ".")), "ebookstore")


def test_the_store_never_imports_the_runtime_or_the_course_and_the_runtime_never_the_course():
    allowed = {"ebookstore": {"ebookstore"}, "ebookstore.runtime": {"ebookstore", "ebookstore.runtime"},
               "ebookstore.course": {"ebookstore", "ebookstore.runtime", "ebookstore.course"}}
    wrong = []
    for module, imported in _graph().items():
        if module == "ebookstore.cli":
            continue  # the command on top of all three parts
        wrong += [f"{module} imports {m}" for m in imported if _part(m) not in allowed[_part(module)]]
    assert wrong == []


@pytest.mark.parametrize("old", ["processes", "stack", "redis_server", "procfile", "course.grading",
                                 "grading", "graders", "specimens", "demo_jobs", "signal_demo", "measure"])
def test_nothing_is_left_at_the_old_module_paths(old):
    if old == "course.grading":  # ebookstore.course is a package now: its grader lives one level down
        assert importlib.util.find_spec("ebookstore.course.grading").origin.endswith("course/grading.py")
        return
    assert importlib.util.find_spec(f"ebookstore.{old}") is None


def _learner_sources():
    for path in sorted((PROJECT_ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        yield path.name, "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    for folder in ("exercises", "solutions"):
        for path in sorted((PROJECT_ROOT / folder).glob("ex*.py")):
            yield f"{folder}/{path.name}", path.read_text()


def test_notebooks_exercises_and_solutions_use_only_public_names():
    private = re.compile(r"(?<![\w.])(?:from\s+[\w.]+\s+import\s+[^\n]*\b_[a-z]\w*|[a-z]\w*\._[a-z]\w*)")
    found = [f"{name}: {m.group(0)}" for name, source in _learner_sources() for m in private.finditer(source)]
    assert found == []
