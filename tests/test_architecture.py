"""The package's layout shows its architecture (``../shared/DESIGN.md``, issue 16).

- no import cycle: no module imports (directly or through others) a module that
  imports it back, counting every import: module level, inside functions (lazy) and
  under ``if TYPE_CHECKING:``;
- no private name (``_name``) of one llmsize module imported or used by another;
- ``ARCHITECTURE.md`` names every module, and every ``.py`` path it names exists.

The checks are plain functions of a package directory (and of ARCHITECTURE.md's text),
so the tests at the bottom run them on small synthetic packages with a known violation.
Only ``src/`` is checked: tests may use private names.
"""

from __future__ import annotations

import ast
import re
import textwrap
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "llmsize"
ARCHITECTURE = REPO / "ARCHITECTURE.md"

#: Import edges that close a cycle today and cannot be removed yet, each with its reason.
#: The graph without them must be acyclic, so any new cycle fails; an entry whose import
#: is gone fails too (delete it then). Keys: (importing module, imported module).
CYCLE_ALLOWLIST: dict[tuple[str, str], str] = {}

#: Private names one module uses of another that cannot be fixed yet, each with its
#: reason. Keys: (using module, "module._name").
PRIVATE_ALLOWLIST: dict[tuple[str, str], str] = {}


# --- walking the package ------------------------------------------------------------


def module_files(package: Path) -> dict[str, Path]:
    """Every module of ``package`` (a directory with ``__init__.py``) by dotted name;
    a package's name means its ``__init__.py``."""
    modules = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def is_package(name: str, modules: dict[str, Path]) -> bool:
    return modules[name].name == "__init__.py"


@dataclass(frozen=True)
class Import:
    importer: str  # the module whose file holds the import statement
    imported: str  # the module it imports (a package means its __init__.py)
    line: int
    names: tuple[str, ...]  # the names a `from ... import` takes from `imported`


def _absolute(importer: str, node: ast.ImportFrom, modules: dict[str, Path]) -> str:
    """The module a ``from`` import names, relative imports resolved."""
    if node.level == 0:
        return node.module or ""
    base = importer.split(".")
    if not is_package(importer, modules):
        base.pop()
    if node.level > 1:
        base = base[: -(node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def imports(package: Path) -> list[Import]:
    """Every import of one of ``package``'s modules by another, at any depth of the file
    (function bodies and ``if TYPE_CHECKING:`` blocks included).

    ``from P import a`` imports ``P.a`` when that is a module, else ``P`` (the name
    is defined there). A package's ``__init__.py`` running before its submodule is the
    interpreter's doing, not a dependency, so ``from llmsize import forward`` depends on
    ``llmsize.physics.forward`` alone, not on the API in ``llmsize/__init__.py``."""
    modules = module_files(package)
    top = package.name
    found = []
    for importer, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    name = alias.name
                    if name == top or name.startswith(top + "."):
                        found.append(Import(importer, _known(name, modules), node.lineno, ()))
            elif isinstance(node, ast.ImportFrom):
                source = _absolute(importer, node, modules)
                if not (source == top or source.startswith(top + ".")):
                    continue
                own = []
                for alias in node.names:
                    sub = f"{source}.{alias.name}"
                    if sub in modules:
                        found.append(Import(importer, sub, node.lineno, ()))
                    else:
                        own.append(alias.name)
                if own:
                    found.append(Import(importer, _known(source, modules), node.lineno, tuple(own)))
    return found


def _known(name: str, modules: dict[str, Path]) -> str:
    """``name`` if it is a module of the package, else its longest module prefix (an
    import of a missing module still depends on the package that should hold it)."""
    while name not in modules and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def import_graph(
    package: Path, without: Iterable[tuple[str, str]] = ()
) -> dict[str, dict[str, int]]:
    """importer -> {imported: first line}, the edges in ``without`` left out."""
    skip = set(without)
    graph: dict[str, dict[str, int]] = {name: {} for name in module_files(package)}
    for imp in imports(package):
        if (imp.importer, imp.imported) not in skip:
            edges = graph[imp.importer]
            edges[imp.imported] = min(edges.get(imp.imported, imp.line), imp.line)
    return graph


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """One cycle (``[a, b, ..., a]``) in each strongly connected component that has one."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def connect(v: str) -> None:  # Tarjan's algorithm; the package is small
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                connect(w)
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
            components.append(component)

    for v in sorted(graph):
        if v not in index:
            connect(v)
    found = []
    for component in components:
        start = min(component)
        if len(component) > 1 or start in graph.get(start, {}):
            found.append(_shortest_cycle(graph, start, component))
    return sorted(found)


def _shortest_cycle(graph: dict[str, dict[str, int]], start: str, within: set[str]) -> list[str]:
    """The shortest path from ``start`` back to itself inside one component (BFS)."""
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for v in frontier:
            for w in sorted(graph.get(v, {})):
                if w not in within:
                    continue
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [*reversed(path), start]
                if w not in previous:
                    previous[w] = v
                    following.append(w)
        frontier = following
    raise AssertionError(f"{start} is not on a cycle")  # pragma: no cover


def describe(cycle: list[str], graph: dict[str, dict[str, int]], package: Path) -> str:
    """``a (a.py:12) -> b (b.py:40) -> a``: each module with the line importing the next."""
    modules = module_files(package)
    steps = []
    for here, there in zip(cycle, cycle[1:], strict=False):
        rel = modules[here].relative_to(package).as_posix()
        steps.append(f"{here} ({rel}:{graph[here][there]})")
    return " -> ".join([*steps, cycle[-1]])


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def private_uses(package: Path) -> list[tuple[str, int, str]]:
    """``(module, line, "other._name")`` for each private name of another module of
    ``package`` that a module imports (``from other import _name``), reads as an
    attribute (``other._name``, ``other`` bound by an import), or imports as a private
    module (``_name.py``) from outside the package holding it."""
    modules = module_files(package)
    found = set()
    for imp in imports(package):
        for name in imp.names:
            if _private(name) and imp.imported != imp.importer:
                found.add((imp.importer, imp.line, f"{imp.imported}.{name}"))
        holder, _, last = imp.imported.rpartition(".")
        inside = imp.importer == holder or imp.importer.startswith(holder + ".")
        if _private(last) and not inside:
            found.add((imp.importer, imp.line, imp.imported))
    top = package.name
    for importer, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        bound = _bound_modules(importer, tree, modules, top)
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and _private(node.attr):
                owner = _module_of(node.value, bound, modules)
                if owner is not None and owner != importer:
                    found.add((importer, node.lineno, f"{owner}.{node.attr}"))
    return sorted(found)


def _bound_modules(
    importer: str, tree: ast.Module, modules: dict[str, Path], top: str
) -> dict[str, str]:
    """Local name -> llmsize module, for every import that binds a module to a name
    (scopes are ignored: the package does not reuse such names)."""
    bound = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == top or alias.name.startswith(top + "."):
                    if alias.asname:
                        bound[alias.asname] = _known(alias.name, modules)
                    else:  # `import llmsize.x` binds `llmsize`
                        bound[alias.name.split(".")[0]] = top
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(importer, node, modules)
            for alias in node.names:
                if f"{source}.{alias.name}" in modules:
                    bound[alias.asname or alias.name] = f"{source}.{alias.name}"
    return bound


def _module_of(node: ast.expr, bound: dict[str, str], modules: dict[str, Path]) -> str | None:
    """The module an expression such as ``io`` or ``llmsize.outputs.io`` names, if any."""
    if isinstance(node, ast.Name):
        return bound.get(node.id)
    if isinstance(node, ast.Attribute):
        parent = _module_of(node.value, bound, modules)
        if parent is not None and f"{parent}.{node.attr}" in modules:
            return f"{parent}.{node.attr}"
    return None


# --- ARCHITECTURE.md --------------------------------------------------------------------


def _docstring_only(path: Path) -> bool:
    """A file with nothing but a docstring (and ``from __future__`` imports)."""
    body = ast.parse(path.read_text(encoding="utf-8")).body
    return all(
        (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))
        or (isinstance(s, ast.ImportFrom) and s.module == "__future__")
        for s in body
    )


def module_paths(package: Path) -> set[str]:
    """The package's modules as ARCHITECTURE.md names them: paths inside the package
    (``outputs/markdown.py``). A subpackage's ``__init__.py`` that holds only a docstring
    is named through its modules; one with code is a module like any other."""
    paths = set()
    for path in package.rglob("*.py"):
        rel = path.relative_to(package).as_posix()
        if path.name == "__init__.py" and "/" in rel and _docstring_only(path):
            continue
        paths.add(rel)
    return paths


def module_table(text: str) -> list[str]:
    """The first cells (backticked paths) of the table whose header is ``| module |``."""
    rows = []
    in_table = False
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if "|" in line else []
        if not in_table:
            in_table = bool(cells) and cells[0] == "module"
            continue
        if not line.lstrip().startswith("|"):
            break
        if set(cells[0]) <= set("-: "):
            continue  # the separator row
        match = re.fullmatch(r"`([^`]+)`", cells[0])
        rows.append(match.group(1) if match else cells[0])
    return rows


#: A file path ending in .py anywhere in the text (prose, tables, the diagram).
PY_PATH = re.compile(r"(?<![\w./-])((?:[\w.-]+/)*\w+\.py)\b")


def named_paths(text: str) -> set[str]:
    return set(PY_PATH.findall(text))


def architecture_problems(text: str, package: Path, repo: Path) -> list[str]:
    """What ARCHITECTURE.md gets wrong about ``package``: modules its table leaves out,
    table rows naming no module, ``.py`` paths (anywhere in it) that do not exist."""
    modules = module_paths(package)
    table = module_table(text)
    problems = []
    if not table:
        return ["no `| module | role |` table"]
    problems += [f"{m}: a module the table does not name" for m in sorted(modules - set(table))]
    problems += [f"{m}: a table row naming no module" for m in table if m not in modules]
    problems += [
        f"{m}: named more than once in the table" for m in sorted(set(table)) if table.count(m) > 1
    ]
    for path in sorted(named_paths(text)):
        # a module of the package (`outputs/io.py`) or a file of the repository (`tests/conftest.py`)
        if not ((package / path).is_file() or (repo / path).is_file()):
            problems.append(f"{path}: named, but no such file in {package.name}/ or the repository")
    return problems


# --- the package itself -----------------------------------------------------------------


def test_no_import_cycle() -> None:
    graph = import_graph(PACKAGE, without=CYCLE_ALLOWLIST)
    found = cycles(graph)
    assert not found, "import cycles (module (file:line of the import) -> ...):\n" + "\n".join(
        describe(c, graph, PACKAGE) for c in found
    )


def test_cycle_allowlist_is_current() -> None:
    """Each allowlisted import still exists and still closes a cycle; else delete it."""
    full = import_graph(PACKAGE)
    for edge, reason in CYCLE_ALLOWLIST.items():
        importer, imported = edge
        assert imported in full[importer], (
            f"{importer} no longer imports {imported} ({reason}): remove it from CYCLE_ALLOWLIST"
        )
        others = [e for e in CYCLE_ALLOWLIST if e != edge]
        assert cycles(import_graph(PACKAGE, without=others)), (
            f"{importer} -> {imported} closes no cycle any more: remove it from CYCLE_ALLOWLIST"
        )


def test_no_private_name_across_modules() -> None:
    found = [
        f"{module}:{line}: {name}"
        for module, line, name in private_uses(PACKAGE)
        if (module, name) not in PRIVATE_ALLOWLIST
    ]
    assert not found, "private names used outside their module:\n" + "\n".join(found)


def test_architecture_names_every_module() -> None:
    problems = architecture_problems(ARCHITECTURE.read_text(encoding="utf-8"), PACKAGE, REPO)
    assert not problems, "ARCHITECTURE.md:\n" + "\n".join(problems)


# --- the checks catch what they should (synthetic packages) ---------------------------


def write_package(root: Path, files: dict[str, str]) -> Path:
    """``root/pkg/`` with ``files`` (paths inside pkg -> source); returns the package."""
    package = root / "pkg"
    for rel, source in {"__init__.py": "", **files}.items():
        path = package / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.parent != package and not (path.parent / "__init__.py").exists():
            (path.parent / "__init__.py").write_text('"""A subpackage."""\n')
        path.write_text(textwrap.dedent(source), encoding="utf-8")
    return package


def test_cycle_through_a_lazy_relative_import_is_found(tmp_path: Path) -> None:
    package = write_package(
        tmp_path,
        {
            "a.py": "from pkg import b\n",
            "b.py": "from pkg.sub.c import value\n",
            "sub/c.py": """
                value = 1
                def later():
                    from ..a import b  # lazy and relative: still an import back
                    return b
            """,
            "d.py": "import pkg.a\n",  # on no cycle
        },
    )
    graph = import_graph(package)
    assert cycles(graph) == [["pkg.a", "pkg.b", "pkg.sub.c", "pkg.a"]]
    assert describe(cycles(graph)[0], graph, package) == (
        "pkg.a (a.py:1) -> pkg.b (b.py:1) -> pkg.sub.c (sub/c.py:4) -> pkg.a"
    )
    assert cycles(import_graph(package, without=[("pkg.sub.c", "pkg.a")])) == []


def test_package_init_is_a_module_but_not_its_submodules_parent(tmp_path: Path) -> None:
    """Importing a submodule does not depend on the package's __init__.py; importing a
    name the __init__.py defines does."""
    package = write_package(
        tmp_path,
        {
            "__init__.py": "VERSION = 1\ndef api():\n    from pkg import work\n",
            "work.py": "from pkg import tool\n",
            "tool.py": "x = 1\n",
        },
    )
    assert cycles(import_graph(package)) == []
    (package / "tool.py").write_text("from pkg import VERSION\n")
    assert cycles(import_graph(package)) == [["pkg", "pkg.work", "pkg.tool", "pkg"]]


def test_self_import_is_a_cycle(tmp_path: Path) -> None:
    package = write_package(tmp_path, {"a.py": "def f():\n    from . import a\n"})
    assert cycles(import_graph(package)) == [["pkg.a", "pkg.a"]]


def test_private_names_across_modules_are_found(tmp_path: Path) -> None:
    package = write_package(
        tmp_path,
        {
            "a.py": "_helper = 1\n__dunder__ = 2\nuse = _helper\n",
            "b.py": "from pkg.a import _helper, __dunder__\n",
            "c.py": "import pkg.a as m\nx = m._helper\ny = m.__dunder__\n",
            "d.py": "import pkg.a\nx = pkg.a._helper\n",
            "e.py": "def f():\n    from . import a\n    return a._helper\n",
            "f.py": "from pkg.a import use\nimport os\nx = os._exit\n",  # clean
            "sub/_impl.py": "x = 1\n",
            "sub/api.py": "from ._impl import x\n",  # its own package: clean
            "g.py": "from pkg.sub import _impl\nimport pkg.sub._impl\n",
        },
    )
    assert private_uses(package) == [
        ("pkg.b", 1, "pkg.a._helper"),
        ("pkg.c", 2, "pkg.a._helper"),
        ("pkg.d", 2, "pkg.a._helper"),
        ("pkg.e", 3, "pkg.a._helper"),
        ("pkg.g", 1, "pkg.sub._impl"),
        ("pkg.g", 2, "pkg.sub._impl"),
    ]


ARCH = """\
# Architecture

```
data.py ──► gone.py
```

| module | role |
|---|---|
| `__init__.py` | the API |
| `a.py` | a |
| `sub/b.py` | b |
| `sub/old.py` | removed since |

Tests are in `tests/test_a.py`.
"""


def test_architecture_problems_are_found(tmp_path: Path) -> None:
    package = write_package(
        tmp_path,
        {
            "a.py": "",
            "sub/b.py": "",
            "sub/new.py": "",
            "data.py": "",
            "other/__init__.py": "x = 1\n",
        },
    )
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_a.py").write_text("")
    assert module_table(ARCH) == ["__init__.py", "a.py", "sub/b.py", "sub/old.py"]
    assert architecture_problems(ARCH, package, tmp_path) == [
        "data.py: a module the table does not name",
        "other/__init__.py: a module the table does not name",
        "sub/new.py: a module the table does not name",
        "sub/old.py: a table row naming no module",
        "gone.py: named, but no such file in pkg/ or the repository",
        "sub/old.py: named, but no such file in pkg/ or the repository",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("see `outputs/markdown.py`", {"outputs/markdown.py"}),
        ("model.py ► pm.Model", {"model.py"}),
        ("`tests/conftest.py` and x.pyc", {"tests/conftest.py"}),
        ("`model._markups` and `llmsize.inference.model`", set()),
    ],
)
def test_named_paths(text: str, expected: set[str]) -> None:
    assert named_paths(text) == expected


# --- tests mirror the package -----------------------------------------------------

TESTS = REPO / "tests"

#: Test files that check more than one module, each with what it checks.
CROSS_CUTTING = {
    "test_api.py": "the Python API, llmsize/__init__.py",
    "test_architecture.py": "the package's layout",
    "test_bad_input.py": "every command's contract for bad input and output paths",
    "test_properties.py": "property-based tests of the inputs through every entry point",
    "inference/test_recovery.py": "parameter recovery: model, sampling and summary together",
}


def mirror_problems(tests: Path, package: Path, cross: dict[str, str]) -> list[str]:
    """Test files ``tests/<dir>/test_<name>.py`` with no module ``<dir>/<name>.py`` in
    ``package``, unless listed in ``cross``."""
    out = []
    for path in sorted(tests.rglob("test_*.py")):
        rel = path.relative_to(tests)
        if rel.parts[0] == "fixtures" or rel.as_posix() in cross:
            continue
        module = rel.with_name(rel.name.removeprefix("test_"))
        if not (package / module).is_file():
            out.append(f"tests/{rel.as_posix()}: no module {module.as_posix()} to mirror")
    return out


def test_tests_mirror_the_package() -> None:
    assert mirror_problems(TESTS, PACKAGE, CROSS_CUTTING) == []


def test_mirror_problems_finds_a_stray_test(tmp_path: Path) -> None:
    package = write_package(tmp_path, {"sub/a.py": "", "b.py": ""})
    tests = tmp_path / "tests"
    for name in ("sub/test_a.py", "test_b.py", "sub/test_gone.py", "test_all.py"):
        (tests / name).parent.mkdir(parents=True, exist_ok=True)
        (tests / name).write_text("")
    assert mirror_problems(tests, package, {"test_all.py": "everything"}) == [
        "tests/sub/test_gone.py: no module sub/gone.py to mirror"
    ]
