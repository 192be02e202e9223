"""The package's shape, checked from its source (DESIGN.md, "Shape of the code"):

- the import graph is a tree: no module imports itself back, through any chain;
- a function-local import is only for a heavy dependency that not every command needs;
- no module branches on a task's or a method's name outside that task's or method's module
  (they read `handle.output`, `task.modality` and method hooks instead).

Each check runs on tailorkit itself and on a small broken package, so it can fail.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import tailorkit
from tailorkit.config.tasks import TASK_NAMES
from tailorkit.methods import METHODS
from tailorkit.recipe import Recipe  # noqa: F401  (registers every task and method)
from tailorkit.tasks import TASKS

SRC = Path(tailorkit.__file__).parent
# Imported inside functions on purpose: heavy, and not needed by every command.
HEAVY = {"peft", "transformers", "bitsandbytes", "sklearn", "skops", "optuna", "matplotlib",
         "sqlalchemy", "datasets", "cleanlab", "nltk", "datasketch",
         "torch.ao",  # deprecated, and warns as soon as it is imported: only where it is used
         "mlflow", "wandb", "torch.utils",  # optional trackers (torch.utils.tensorboard needs tensorboard)
         "onnx", "onnxruntime",  # tailor export --format onnx only
         "gguf",  # tailor export --format gguf only; an offline asset, installed --no-deps
         "fastapi", "uvicorn"}  # tailor serve only: a training run must not load them (test_import_cost.py)


def modules(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package at `root`."""
    out = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imports(path: Path, known: dict[str, Path]) -> list[tuple[str, int, bool]]:
    """(imported package module, line, inside a function) for every import in `path`."""
    out = []

    def visit(node: ast.AST, local: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = local or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.Import):
                out.extend((alias.name, child.lineno, inner) for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                for alias in child.names:  # `from pkg import module` imports the module
                    full = f"{child.module}.{alias.name}"
                    out.append((full if full in known else child.module, child.lineno, inner))
            visit(child, inner)

    visit(ast.parse(path.read_text()), False)
    return out


def import_graph(root: Path, packages: bool = False) -> dict[str, list[str]]:
    """Module -> the package modules it imports; with `packages`, each top-level subpackage
    (`tailorkit.methods`) counts as one node, as the layout picture draws it."""
    known = modules(root)

    def node(name: str) -> str:
        parts = name.split(".")
        return ".".join(parts[:2]) if packages else name

    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        targets = {target for target, _, _ in imports(path, known) if target in known}
        if path.name == "__init__.py" and "pkgutil.iter_modules" in path.read_text():
            targets |= {m for m in known if m.rpartition(".")[0] == name}  # imports all its modules
        targets = {node(target) for target in targets}
        graph.setdefault(node(name), set()).update(targets - {node(name)} if packages else targets)
    return {name: sorted(targets) for name, targets in graph.items()}


def find_cycle(graph: dict[str, list[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    stack: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in graph.get(node, []):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (cycle := walk(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for name in sorted(graph):
        if name not in state and (cycle := walk(name)):
            return cycle
    return None


# The `tailor` entry point picks the allocator and may restart the process before anything
# heavy loads: it imports the CLI (and with it torch) only after that. `tailor serve` alone
# needs the HTTP stack: FastAPI stays out of every other command (tests/test_import_cost.py).
DEFERRED = {("tailorkit/launch.py", "tailorkit.cli"), ("tailorkit/cli_export.py", "tailorkit.serve.app")}


def local_imports(root: Path) -> list[str]:
    """Function-local imports that are not a heavy dependency."""
    known = modules(root)
    return [f"{path.relative_to(root.parent)}:{line}: {target}"
            for path in known.values() for target, line, local in imports(path, known)
            if local and not {target.split(".")[0], ".".join(target.split(".")[:2])} & HEAVY
            and (str(path.relative_to(root.parent)), target) not in DEFERRED]


def name_branches(root: Path, owners: dict[str, str], classes: dict[str, str]) -> list[str]:
    """Comparisons with a registered name, and isinstance checks of a method's class, outside
    the module that defines it. `owners`: task or method name -> its module (dotted);
    `classes`: method class name -> its module."""
    found = []
    for name, path in modules(root).items():
        where = path.relative_to(root.parent)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                for side in (node.left, *node.comparators):
                    for item in side.elts if isinstance(side, ast.Tuple | ast.List | ast.Set) else [side]:
                        value = item.value if isinstance(item, ast.Constant) else None
                        if value in owners and owners[value] != name:
                            found.append(f"{where}:{node.lineno}: compares with the name '{value}'")
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "isinstance":
                for cls in node.args[1].elts if isinstance(node.args[1], ast.Tuple) else [node.args[1]]:
                    if getattr(cls, "id", None) in classes and classes[cls.id] != name:
                        found.append(f"{where}:{node.lineno}: isinstance of the method class {cls.id}")
    return found


OWNERS = {**{name: type(TASKS[task]).__module__ for name, task in TASK_NAMES.items()},
          **{name: cls.__module__ for name, cls in METHODS.items()}}
METHOD_CLASSES = {cls.__name__: cls.__module__ for cls in METHODS.values()}


@pytest.mark.parametrize("packages", [False, True], ids=["modules", "packages"])
def test_the_import_graph_has_no_cycle(packages):
    cycle = find_cycle(import_graph(SRC, packages))
    assert cycle is None, " -> ".join(cycle)


def test_function_local_imports_are_only_for_heavy_dependencies():
    assert local_imports(SRC) == []


def test_no_module_branches_on_a_task_or_method_name_outside_it():
    assert OWNERS["sft"] == "tailorkit.tasks.causal_lm" and OWNERS["lora"] == "tailorkit.methods.lora"
    assert name_branches(SRC, OWNERS, METHOD_CLASSES) == []
def _broken_package(tmp_path: Path) -> Path:
    root = tmp_path / "pkg"
    (root / "tasks").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "tasks" / "__init__.py").write_text("")
    (root / "a.py").write_text("from pkg.b import thing\n")
    (root / "b.py").write_text("from pkg import a\nthing = 1\n")
    (root / "c.py").write_text("def f(task):\n    from pkg import a\n    import sklearn\n"
                               "    return task == 'regression' or isinstance(task, Lora)\n")
    (root / "tasks" / "regression.py").write_text("def f(task):\n    return task == 'regression'\n")
    return root


def test_each_check_finds_what_it_looks_for(tmp_path):
    root = _broken_package(tmp_path)
    assert find_cycle(import_graph(root)) == ["pkg.a", "pkg.b", "pkg.a"]
    (root / "b.py").write_text("thing = 1\n")
    (root / "tasks" / "base.py").write_text("from pkg.a import thing\n")
    (root / "a.py").write_text("from pkg.b import thing\nfrom pkg.tasks import regression\n")
    assert find_cycle(import_graph(root)) is None  # module by module, a tree
    assert find_cycle(import_graph(root, packages=True)) == ["pkg.a", "pkg.tasks", "pkg.a"]
    assert local_imports(root) == ["pkg/c.py:2: pkg.a"]
    owners = {"regression": "pkg.tasks.regression", "lora": "pkg.methods.lora"}
    assert name_branches(root, owners, {"Lora": "pkg.methods.lora"}) == [
        "pkg/c.py:4: compares with the name 'regression'", "pkg/c.py:4: isinstance of the method class Lora"]
