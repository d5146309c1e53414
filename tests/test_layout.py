"""The package's layout: imports go one way, between modules and between the groups of docs/development.md.

A group is a top-level module (the RecBole adapters: ``config``, ``quick_start``, ...) or a subpackage
(``model``, ``training``, ``search``, ``deploy``, ``serving``, ``device``). Every import counts, those inside
functions too: a lazy import is a dependency all the same.
"""

import ast
import glob
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def module_files():
    """``{dotted module name: file}`` for every module of ``recbole_duet``."""
    modules = {}
    for file in glob.glob(os.path.join(REPO, "recbole_duet", "**", "*.py"), recursive=True):
        name = os.path.relpath(file, REPO)[: -len(".py")].replace(os.sep, ".")
        modules[name.removesuffix(".__init__")] = file
    return modules


MODULES = module_files()


def imported(file):
    """The ``recbole_duet`` modules and packages a file imports, anywhere in it."""
    names = set()
    with open(file, encoding="utf-8") as handle:
        tree = ast.parse(handle.read())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module.startswith("recbole_duet"):
            submodules = {f"{node.module}.{alias.name}" for alias in node.names} & MODULES.keys()
            names |= submodules or {node.module}
        elif isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names if alias.name.startswith("recbole_duet")}
    return names


IMPORTS = {module: imported(file) for module, file in MODULES.items()}


def group(module):
    return ".".join(module.split(".")[:2])


def cycles(graph):
    """Every cycle a depth-first walk of ``{node: set of nodes}`` meets (empty for a DAG)."""
    state, found = {}, []

    def walk(node, path):
        state[node] = "open"
        for successor in sorted(graph.get(node, ())):
            if state.get(successor) == "open":
                found.append(path[path.index(successor) :] + [node, successor])
            elif successor not in state:
                walk(successor, path + [node])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            walk(node, [])
    return found


def test_no_import_cycle_between_modules_or_between_groups():
    groups = {}
    for module, names in IMPORTS.items():
        groups.setdefault(group(module), set()).update(group(name) for name in names if group(name) != group(module))
    assert cycles(IMPORTS) == []
    assert cycles(groups) == []


def test_no_module_imports_a_package_above_it():
    """``from recbole_duet.model import DUET`` inside ``recbole_duet/model/`` would run the package's ``__init__``
    from inside it; a package's ``__init__`` may import its own submodules."""
    upward = []
    for module, names in IMPORTS.items():
        above = {module.rsplit(".", depth)[0] for depth in range(1, module.count(".") + 1)}
        if MODULES[module].endswith("__init__.py"):
            above.add(module)
        upward += [(module, name) for name in names if name in above]
    assert upward == []


@pytest.mark.parametrize("side, allowed", [("device", {"device"}), ("serving", {"device", "serving"})])
def test_the_device_and_the_service_import_nothing_of_the_training_side(side, allowed):
    reached = {name for module, names in IMPORTS.items() if group(module) == f"recbole_duet.{side}" for name in names}
    assert {group(name) for name in reached} <= {f"recbole_duet.{name}" for name in allowed}


def test_the_layout_groups_hold_the_modules_docs_development_lists():
    with open(os.path.join(REPO, "docs", "development.md"), encoding="utf-8") as handle:
        layout = handle.read().split("## Layout", 1)[1]
    for module, file in MODULES.items():
        if not file.endswith("__init__.py"):
            assert os.path.basename(file) in layout, f"{module} is missing from the layout in docs/development.md"
