"""The package's import graph: no cycle (counting imports inside functions too), imports at module top but for an
explicit few, each heavy library imported by its owner only, and none of them loaded at start-up."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "kinestream"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the kinestream modules it imports anywhere in its text (a package's submodules named in
    ``from package import submodule`` count as the submodules)."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                edges |= {a.name for a in node.names if a.name in modules}
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("kinestream"):
                subs = {f"{node.module}.{a.name}" for a in node.names} & modules.keys()
                edges |= subs or ({node.module} & modules.keys())
        graph[name] = edges - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a list of modules, or None."""
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycle():
    graph = import_graph()
    assert len(graph) > 30 and "kinestream.live.service" in graph
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_the_cycle_finder_finds_a_cycle():
    graph = import_graph()
    graph["kinestream.errors"] = {"kinestream.commands.main"}  # errors -> main -> ... -> errors
    cycle = find_cycle(graph)
    assert cycle is not None and cycle[0] == cycle[-1]


def test_the_stage_cores_do_not_reach_the_live_shell_or_the_commands():
    graph = import_graph()
    cores = ("config", "settings", "ingest", "clean", "augment", "lstm", "scale", "solve", "fastik", "reps", "centres")
    for core in (*cores, "pipeline"):
        reached = graph[f"kinestream.{core}"]
        assert not {m for m in reached if m.startswith(("kinestream.live", "kinestream.commands"))}, core


# Imports go at module top. The exceptions: the command handlers and the Python API load the stages (SciPy's
# signal filters, OpenSim, onnxruntime) and the live path (ZeroMQ, Rerun) only when they run, so that
# `kinestream --help`, `kinestream config` and `import kinestream.api` start quickly. Module -> the kinestream
# modules it may import inside a function.
LAZY_IMPORTS: dict[str, set[str]] = {
    "kinestream.api": {"kinestream.offline", "kinestream.scale", "kinestream.synth"},
    "kinestream.commands.batch": {"kinestream.batch"},
    "kinestream.commands.demo": {
        "kinestream.synth",
        "kinestream.offline",
        "kinestream.live.calibrate",
        "kinestream.live.replay",
        "kinestream.live.service",
    },
    "kinestream.commands.live": {
        "kinestream.live.calibrate",
        "kinestream.live.service",
        "kinestream.live.workers",
        "kinestream.live.transport",
    },
    "kinestream.commands.replay": {"kinestream.live.replay", "kinestream.live.transport"},
    "kinestream.commands.trial": {"kinestream.batch", "kinestream.offline", "kinestream.scale", "kinestream.synth"},
    # live.viewers before rerun is imported: it turns Rerun's analytics off first
    "kinestream.commands.view": {"kinestream.live.viewers", "kinestream.live.transport", "kinestream.live.view"},
}

# The heavy third-party libraries, each imported in its owner module(s) only, and there only when first needed
# (except ZeroMQ, Rerun and aiomqtt, imported at the top of live/ modules that only the live commands reach).
HEAVY_OWNERS: dict[str, set[str]] = {
    "opensim": {"kinestream.osim"},
    "onnxruntime": {"kinestream.lstm"},
    "onnx": {"kinestream.lstm"},
    "ezc3d": {"kinestream.files.c3d"},
    "matplotlib": {"kinestream.plots"},
    "dask": {"kinestream.commands.batch"},  # the cluster's TLS, with its client
    "distributed": {"kinestream.batch", "kinestream.commands.batch"},  # the command's own client and cluster
    "rerun": {"kinestream.live.view", "kinestream.live.viewers"},
    "aiomqtt": {"kinestream.live.mqtt", "kinestream.examples.subscriber"},  # the example stands alone
    "zmq": {"kinestream.live", "kinestream.examples.subscriber"},  # the live package is ZeroMQ's place
    "tqdm": {"kinestream.commands.terminal", "kinestream.commands.batch"},  # progress bars: the command layer only
}


def imports_in_functions(tree: ast.AST):
    """(line, module) of every import inside a function body."""
    for fn in ast.walk(tree):
        if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            for node in ast.walk(fn):
                if isinstance(node, ast.Import):
                    yield from ((node.lineno, a.name) for a in node.names)
                elif isinstance(node, ast.ImportFrom):
                    yield node.lineno, "." * node.level + (node.module or "")


def lazy_package_imports(sources: dict[str, str]) -> list[str]:
    """Imports of kinestream modules inside functions that LAZY_IMPORTS does not allow."""
    found = []
    for name, text in sources.items():
        for line, module in imports_in_functions(ast.parse(text)):
            if (module.startswith(("kinestream", ".")) and module not in LAZY_IMPORTS.get(name, set())) or (
                module == "kinestream"
            ):
                found.append(f"{name}:{line} imports {module} in a function")
    return sorted(set(found))


def heavy_imports_outside_owners(sources: dict[str, str]) -> list[str]:
    found = []
    for name, text in sources.items():
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                owners = HEAVY_OWNERS.get(module.split(".")[0])
                if owners is not None and not any(name == o or name.startswith(o + ".") for o in owners):
                    found.append(f"{name}:{node.lineno} imports {module}")
    return found


def package_sources() -> dict[str, str]:
    return {module_name(p): p.read_text() for p in PACKAGE.rglob("*.py")}


def test_imports_of_the_package_are_at_module_top():
    assert lazy_package_imports(package_sources()) == []


def test_a_package_import_in_a_function_is_found():
    sources = package_sources()
    sources["kinestream.pipeline"] += "\n\ndef late():\n    from kinestream.solve import ik_setup\n"
    sources["kinestream.commands.trial"] += "\n\ndef late():\n    from kinestream import checks\n"
    assert len(lazy_package_imports(sources)) == 2


def test_each_heavy_library_is_imported_by_its_owner_only():
    assert heavy_imports_outside_owners(package_sources()) == []


def test_a_heavy_import_outside_its_owner_is_found():
    sources = package_sources()
    sources["kinestream.augment"] += "\n\ndef session():\n    import onnxruntime\n"
    sources["kinestream.commands.main"] = "import zmq\n" + sources["kinestream.commands.main"]
    assert len(heavy_imports_outside_owners(sources)) == 2


HEAVY_CHECK = """
import sys
{imports}
heavy = {heavy!r}
print(sorted(m for m in sys.modules if m.split(".")[0] in heavy or m in heavy))
"""


def heavy_loaded(imports: str, also: frozenset[str] = frozenset({"scipy.signal"})) -> str:
    """The heavy libraries (and ``also``) loaded once ``imports`` has run in a fresh interpreter."""
    code = HEAVY_CHECK.format(imports=imports, heavy=set(HEAVY_OWNERS) | set(also))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def test_start_up_loads_no_heavy_library():
    # `kinestream --help` and `kinestream config` import the commands and build the parser, nothing more
    assert heavy_loaded("import kinestream") == "[]"
    assert heavy_loaded("import kinestream.commands.main as m; m.build_parser()") == "[]"
    assert heavy_loaded("import kinestream.api") == "[]"


def test_the_settings_load_no_stage():
    """Every command builds its settings before it loads a stage: kinestream.settings (and kinestream.config, which
    it reads) import neither SciPy, nor OpenSim, onnxruntime or ZeroMQ, nor any stage of the package."""
    light = "kinestream.settings, kinestream.config, kinestream.errors, kinestream.checks, kinestream.ingest"
    reached = import_graph()["kinestream.settings"]
    assert reached <= {*light.split(", "), "kinestream.files.trc"}, reached
    settings = "import kinestream.settings as s; s.load_settings().override({'clean': {'cutoff_hz': 3.0}})"
    assert heavy_loaded(settings, also=frozenset({"scipy"})) == "[]"


def test_the_start_up_check_sees_a_heavy_library():
    assert "zmq" in heavy_loaded("import kinestream.commands.main, kinestream.live.transport")
    assert heavy_loaded("import kinestream.settings, scipy.linalg", also=frozenset({"scipy"})) != "[]"


# Test modules that check the whole rather than one module: the docs, the import graph, the built wheel, errors
CROSS_CUTTING = {"test_docs", "test_imports", "test_packaging", "test_errors"}


def test_the_tests_mirror_the_package():
    """tests/<package>/test_<module>*.py for a subpackage's modules, tests/test_<module>*.py for the top-level ones: a
    test module is named after the module (or subpackage) it tests, so that a reader finds one from the other."""
    tests = Path(__file__).resolve().parent
    modules = {module_name(p).removeprefix("kinestream.") for p in PACKAGE.rglob("*.py")}
    strays = []
    for path in tests.rglob("test_*.py"):
        where = path.parent.relative_to(tests).parts
        stem = path.stem.removeprefix("test_")
        if not where and path.stem in CROSS_CUTTING:
            continue
        prefix = ".".join(where)
        named = {m.removeprefix(prefix + ".") for m in modules if not prefix or m.startswith(prefix + ".")}
        if where and prefix not in modules:
            strays.append(f"{path.relative_to(tests)}: kinestream.{prefix} is not a subpackage")
        elif not any(stem == m or stem.startswith(m.split(".")[-1] + "_") for m in named | ({prefix} - {""})):
            strays.append(f"{path.relative_to(tests)}: no module kinestream.{prefix + '.' if prefix else ''}{stem}")
    assert strays == []


def sizes(sources: dict[str, str]) -> list[str]:
    """The modules over 700 lines and the classes over 300: the size past which a reader loses the thread."""
    over = []
    for name, text in sources.items():
        lines = text.count("\n") + 1
        if lines > 700:
            over.append(f"{name}: {lines} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > 300:
                over.append(f"{name}.{node.name}: {node.end_lineno - node.lineno + 1} lines")
    return over


def test_no_module_over_700_lines_and_no_class_over_300():
    sources = {module_name(p): p.read_text() for p in PACKAGE.rglob("*.py")}
    assert sizes(sources) == []
    grown = {"big": "\n" * 700, "cls": "class A:\n" + "    x = 1\n" * 300}
    assert sizes(grown) == ["big: 701 lines", "cls.A: 301 lines"]
