"""pyproject.toml declares exactly what the code imports, each dependency once.

An import that only works because another package happened to pull its
distribution in breaks the day that package stops doing so; a declared
dependency nothing imports is installed, audited and upgraded for nothing. So
every top-level import in agent/ (the runtime) and in tests/ and loadtest/ (the
``test`` extra) is mapped to the installed distribution that provides it, and
compared with the declarations. Each failure names the file and line, and says
what to change.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import re
import sys
import tomllib
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIRST_PARTY = {"agent", "tests", "loadtest"}
REINSTALL = ".venv/bin/pip install -e '.[test]'"

# Declared on purpose although no code imports them: commands and pytest plugins.
# A tool added to the test extra goes here, with what it is for.
NOT_IMPORTED = {
    "ruff": "the linter, run as a command by scripts/test",
    "pytest-timeout": "a pytest plugin loaded by its entry point (timeout in [tool.pytest.ini_options])",
    "import-linter": "the architecture contracts of .importlinter, run as lint-imports by scripts/test",
}


def normalize(name: str) -> str:
    """A distribution's name as PEP 503 compares them: case and runs of -_. do not matter."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(spec: str) -> str:
    m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", spec)
    assert m, f"pyproject.toml: cannot read a distribution name in {spec!r}"
    return normalize(m.group(1))


def declared() -> tuple[list[str], list[str]]:
    """The runtime dependencies and the ``test`` extra, as normalized names, in file order."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = [requirement_name(s) for s in project.get("dependencies", [])]
    test = [requirement_name(s) for s in project.get("optional-dependencies", {}).get("test", [])]
    return runtime, test


@functools.cache
def imports(*folders: str, root: Path = ROOT) -> dict[str, list[str]]:
    """Dotted names of absolute, non-stdlib, non-first-party imports -> where ("path:line"); do not mutate."""
    found: dict[str, list[str]] = {}
    for folder in folders:
        for path in sorted((root / folder).rglob("*.py")):
            where = path.relative_to(root)
            for node in ast.walk(ast.parse(path.read_text(), str(where))):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.partition(".")[0]
                    if top not in sys.stdlib_module_names and top not in FIRST_PARTY:
                        found.setdefault(name, []).append(f"{where}:{node.lineno}")
    return found


_PROVIDERS = importlib.metadata.packages_distributions()


def distribution(dotted: str) -> str | None:
    """The installed distribution providing the module, normalized; None if none does.

    A namespace package (``google``) can come from several distributions; the
    one holding the imported sub-package (``google/protobuf``) is the provider.
    """
    top, _, rest = dotted.partition(".")
    candidates = _PROVIDERS.get(top, [])
    if len(candidates) > 1 and rest:
        prefix = "/".join([top, rest.partition(".")[0]]) + "/"
        holding = [d for d in candidates
                   if any(str(f).startswith(prefix) for f in importlib.metadata.files(d) or ())]
        candidates = holding or candidates
    return normalize(candidates[0]) if candidates else None


def undeclared(found: dict[str, list[str]], allowed: Iterable[str], where_to_add: str) -> list[str]:
    allowed = set(allowed)
    problems = []
    for name, places in sorted(found.items()):
        dist = distribution(name)
        if dist is None:
            problems.append(f"{places[0]} imports {name}, which no installed distribution provides: "
                            f"declare it in {where_to_add} and run {REINSTALL}")
        elif dist not in allowed:
            problems.append(f"{places[0]} imports {name} (distribution {dist}), "
                            f"which pyproject.toml does not declare in {where_to_add}")
    return problems


def imported_distributions(found: dict[str, list[str]]) -> set[str]:
    return {d for d in map(distribution, found) if d is not None}


def test_each_dependency_is_declared_once() -> None:
    runtime, test = declared()
    names = runtime + test
    twice = sorted({n for n in names if names.count(n) > 1})
    assert not twice, f"pyproject.toml declares these more than once (runtime and test extra together): {twice}"


def test_agent_imports_only_runtime_dependencies() -> None:
    runtime, _ = declared()
    problems = undeclared(imports("agent"), runtime, "[project] dependencies")
    assert not problems, "\n".join(problems)


def test_tests_and_loadtest_import_only_declared_dependencies() -> None:
    runtime, test = declared()
    problems = undeclared(imports("tests", "loadtest"), runtime + test,
                          "[project.optional-dependencies] test")
    assert not problems, "\n".join(problems)


def test_every_runtime_dependency_is_imported_by_agent() -> None:
    runtime, _ = declared()
    unused = sorted(set(runtime) - imported_distributions(imports("agent")))
    assert not unused, (
        f"[project] dependencies lists {unused}, which agent/ never imports: remove them "
        "(or move them to the test extra if only tests/ or loadtest/ use them)"
    )


def test_every_test_dependency_is_imported_or_a_named_tool() -> None:
    _, test = declared()
    unused = sorted(set(test) - imported_distributions(imports("tests", "loadtest")) - set(NOT_IMPORTED))
    assert not unused, (
        f"the test extra lists {unused}, which tests/ and loadtest/ never import: remove them, "
        "or, for a command or pytest plugin, name it in NOT_IMPORTED in tests/test_dependencies.py"
    )
    assert set(NOT_IMPORTED) <= set(test), "NOT_IMPORTED names a tool the test extra no longer declares"


def test_the_checks_see_what_they_are_meant_to(tmp_path: Path) -> None:
    """Nested, dotted and aliased imports are found; stdlib, relative and first-party ones are not."""
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "mod.py").write_text(
        "import os, yarl as y\n"
        "from google.protobuf import descriptor_pb2\n"
        "from . import sibling\n"
        "import agent.labels\n"
        "def later():\n"
        "    import no_such_module_anywhere\n"
    )
    found = imports("pkg", root=tmp_path)
    assert found == {"yarl": ["pkg/mod.py:1"], "google.protobuf": ["pkg/mod.py:2"],
                     "no_such_module_anywhere": ["pkg/mod.py:6"]}
    problems = undeclared(found, ["protobuf"], "[project] dependencies")
    assert problems == [
        "pkg/mod.py:6 imports no_such_module_anywhere, which no installed distribution provides: "
        f"declare it in [project] dependencies and run {REINSTALL}",
        "pkg/mod.py:1 imports yarl (distribution yarl), which pyproject.toml does not declare in "
        "[project] dependencies",
    ]
    assert distribution("re2") == "google-re2" and distribution("yaml") == "pyyaml"
    assert requirement_name("Zlib_NG[extra] >= 0.5 ; python_version >= '3.11'") == "zlib-ng"
