"""The package's shape: data flows one way, so imports point one way.

Every ``moodlens`` import in ``src/`` (module level, inside functions and under ``TYPE_CHECKING``
alike) is read with :mod:`ast`. The pipeline stages sit in layers in the order a frame meets
them; a module may import its own layer or lower ones, never a higher one, and no set of modules
may import each other in a circle. Training sits beside the pipeline: it may use the stages a
face passes through on its way to the model, and only presenters (CLI, benchmark) reach it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# top-level module or subpackage -> layer; a frame meets them bottom to top
LAYERS = {
    **dict.fromkeys(("errors", "classes", "paths", "weights"), 0),    # shared facts
    **dict.fromkeys(("faces", "preprocess"), 1),                      # the record, the one preprocessing
    **dict.fromkeys(("sources", "detect", "pose", "crop", "classify"), 2),  # one frame's stages
    "track": 3,
    **dict.fromkeys(("recognizer", "gallery"), 4),                    # the pipeline assembled
    **dict.fromkeys(("focus", "aggregate"), 5),                        # per second: attention state, records
    "attention": 6,                                                   # what the seconds mean
    **dict.fromkeys(("store", "journal"), 7),
    **dict.fromkeys(("annotate", "benchmark", "simulate", "batch", "web", "desktop", "cli"), 8),  # presenters
}
TRAINING = "training"
TRAINING_MAY_USE = {name for name, layer in LAYERS.items() if layer <= 2}


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(source: str, name: str, modules: set[str], is_package: bool = False) -> set[str]:
    """The ``modules`` that module ``name`` imports."""
    package = name if is_package else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            # `from moodlens.web import sessions` imports the module moodlens.web.sessions; its
            # package is imported first anyway, which is no dependency of the importer's own
            submodules = {f"{target}.{a.name}" for a in node.names} & modules
            found |= submodules or {target}
    return found & modules


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in (SRC / "moodlens").rglob("*.py")}
    return {name: _imports(path.read_text(), name, set(files), path.name == "__init__.py") - {name}
            for name, path in files.items()}


def _group(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


GRAPH = _graph()


def test_every_top_level_module_has_a_layer():
    groups = {_group(m) for m in GRAPH} - {"", TRAINING}
    assert groups <= set(LAYERS), f"place these in a layer: {sorted(groups - set(LAYERS))}"


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_imports_point_down_or_sideways(module):
    group = _group(module)
    if group == "":
        return  # moodlens/__init__.py re-exports the public API
    wrong = []
    for target in GRAPH[module]:
        to = _group(target)
        if to in ("", group):
            continue
        if group == TRAINING:
            ok = to in TRAINING_MAY_USE
        elif to == TRAINING:
            ok = LAYERS[group] == 8
        else:
            ok = LAYERS[to] <= LAYERS[group]
        if not ok:
            wrong.append(target)
    assert not wrong, f"{module} imports up the pipeline: {sorted(wrong)}"


def test_no_import_cycles():
    # Tarjan's strongly connected components: any component of more than one module is a circle
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
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
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    assert not cycles, f"modules that import each other: {cycles}"


def test_the_import_reader_sees_every_kind_of_import():
    """Relative, aliased, in-function and TYPE_CHECKING imports all count, so the clean results
    above mean something."""
    source = ("from . import live\nfrom ..store import Store\nimport moodlens.track as t\n"
              "def f():\n    from moodlens.recognizer import Recognizer\n"
              "if TYPE_CHECKING:\n    from moodlens.web.server import MoodLens\n")
    found = _imports(source, "moodlens.web.sessions", set(GRAPH))
    assert found == {"moodlens.web.live", "moodlens.store", "moodlens.track", "moodlens.recognizer",
                     "moodlens.web.server"}
