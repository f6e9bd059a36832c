"""The untouched stub of an exercise, made from its solution.

A stub is its solution with each public function's body replaced by
`raise NotImplementedError` (and the solution's private helpers, `_name`s, left out).
Tests grade this, not exercises/: a learner's edited copy must not change
what "every check fails on the untouched stub" means.
"""
import ast

STUB_BODY = "    raise NotImplementedError  # your code here\n"


def stub_from_solution(source: str) -> str:
    lines = source.splitlines(keepends=True)
    cuts = []  # (first line index, last line index exclusive, replacement)
    for node in ast.parse(source).body:
        private_value = isinstance(node, ast.Assign) and all(
            isinstance(t, ast.Name) and t.id.startswith("_") for t in node.targets)
        if not (isinstance(node, ast.FunctionDef) or private_value):
            continue
        start = (node.decorator_list[0].lineno if getattr(node, "decorator_list", None) else node.lineno) - 1
        if private_value or node.name.startswith("_"):
            while start > 0 and not lines[start - 1].strip():
                start -= 1  # the blank lines before a helper go with it
            cuts.append((start, node.end_lineno, ""))
            continue
        first = node.body[0]
        has_doc = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str)
        body_start = first.end_lineno if has_doc else node.body[0].lineno - 1
        cuts.append((body_start, node.end_lineno, STUB_BODY))
    for start, end, replacement in sorted(cuts, reverse=True):
        lines[start:end] = [replacement] if replacement else []
    return "".join(lines)
