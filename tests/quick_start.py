"""A pytest plugin, loaded before any other (`-p tests.quick_start`, pyproject.toml's addopts): it leaves out
one import that made every test process start 1.4 s late.

nbformat (nbmake, the tests that read notebooks) imports jsonschema, which imports rfc3987_syntax when it is
installed (it is: jupyter-events asks for jsonschema[format-nongpl]), and that module builds a parser for
RFC 3987's grammar as it is imported: 1.4 s of CPU in each of a run's ten-odd pytest processes, all starting
at once on two cores. jsonschema uses it only to check "iri" formats, which nbformat's notebook schema has
none of, and does without it when it cannot be imported.
"""
import sys

sys.modules.setdefault("rfc3987_syntax", None)  # `import rfc3987_syntax` now raises ImportError
