"""The layout's rules, checked on the source: one namespace, imports that run one way, small modules.

* Every import of the project's own code is `earshot.*`: a bare `import server`
  works from a checkout and fails from the wheel.
* The product (server/, agents/, models/) never imports the load tester or the
  benchmarks, and the server's run-time code never imports training code.
* No module over MAX_LINES, and no class over MAX_CLASS_LINES, unless the
  module's docstring says why ("Why this module is long").
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGES = ("server", "agents", "models", "loadtest", "client")
PRODUCT = ("server", "agents", "models")
TRAINING = ("earshot.models.intent_training", "earshot.models.intent_dataset")
MAX_LINES = 400  # the ~400 of the developers' guide, with no slack: a longer module says why
LONG_MODULE_NOTE = "Why this module is long"


def python_files(*folders: str) -> list[Path]:
    return sorted(path for folder in folders for path in (REPO / folder).rglob("*.py"))


def imported_modules(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append(node.module)
    return found


def test_project_code_is_imported_through_the_earshot_namespace():
    bare = [
        f"{path.relative_to(REPO)}: {module}"
        for path in python_files(*PACKAGES, "bench", "tests")
        for module in imported_modules(path)
        if module.split(".")[0] in PACKAGES
    ]
    assert bare == []


def test_the_product_never_imports_the_load_tester_or_the_benchmarks():
    upward = [
        f"{path.relative_to(REPO)}: {module}"
        for path in python_files(*PRODUCT)
        for module in imported_modules(path)
        if module.startswith(("earshot.loadtest", "bench"))
    ]
    assert upward == []


def test_serving_loads_no_training_code_and_no_load_tester():
    code = (
        "import sys, earshot.server.serve_command, earshot.server.app, earshot.server.modes, "
        "earshot.server.transcribe_command, earshot.server.cli\n"
        f"print([m for m in sys.modules if m.startswith({TRAINING + ('earshot.loadtest', 'bench')!r})])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("folder", [*PACKAGES, "bench"])
def test_modules_are_small_or_say_why(folder: str):
    extension = "*.js" if folder == "client" else "*.py"
    long = []
    for path in sorted((REPO / folder).rglob(extension)):
        lines = path.read_text().count("\n")
        if lines > MAX_LINES and LONG_MODULE_NOTE not in path.read_text()[:4000]:
            long.append(f"{path.relative_to(REPO)} ({lines} lines)")
    assert long == []


MAX_CLASS_LINES = 250


@pytest.mark.parametrize("folder", [*PRODUCT, "loadtest", "bench"])
def test_classes_are_small_or_their_module_says_why(folder: str):
    long = []
    for path in python_files(folder):
        text = path.read_text()
        for node in ast.walk(ast.parse(text)):
            size = node.end_lineno - node.lineno + 1 if isinstance(node, ast.ClassDef) else 0
            if size > MAX_CLASS_LINES and LONG_MODULE_NOTE not in text[:4000]:
                long.append(f"{path.relative_to(REPO)}: {node.name} ({size} lines)")
    assert long == []
