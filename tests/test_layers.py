"""The package's layers point one way (docs/ARCHITECTURE.md, "Layers"): no import cycle between
perception_mtl modules, each layer imports only layers below it, config.py and the distributed
helpers are leaves, models never import tasks, and a per-task network's seed ignores the registry.

The layer table is read from the block under "## Layers" in docs/ARCHITECTURE.md, its one copy.

The import graph is read from the source with `ast`: every import, also those inside functions (a
lazy import is still a dependency), but not those under `if TYPE_CHECKING:` (annotations only,
never run). Importing `a.b.c` also runs the packages `a` and `a.b`, so those are edges too, except
the importer's own packages, which run before it whatever it imports.
"""
from __future__ import annotations

import ast
import functools
import re
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest
import torch
from torch import nn

from perception_mtl.core.config import merge_config
from perception_mtl.models.per_task import PerTaskModel
from perception_mtl.tasks import TASKS

PACKAGE = Path(__file__).resolve().parents[1] / "perception_mtl"

ARCHITECTURE = PACKAGE.parent / "docs" / "ARCHITECTURE.md"
LAYER_LINE = re.compile(r" *(\d+) +(\w+(?:, \w+)*)(?:  +.*)?")  # "<k>  <unit>, <unit>  <what they hold>"


def read_layers(markdown: str) -> list[set[str]]:
    """The units of each layer, bottom to top, from the first fenced block after "## Layers": a
    line per layer, numbered from 0 up without a gap; a unit is a subpackage or a top-level module,
    which imports units of lower layers only."""
    block = markdown.split("\n## Layers\n", 1)[1].split("```\n")[1]
    layers = {int(m[1]): set(m[2].split(", ")) for line in block.splitlines() if (m := LAYER_LINE.fullmatch(line))}
    assert sorted(layers) == list(range(len(layers))), f"layers not numbered 0..n in {ARCHITECTURE}: {sorted(layers)}"
    return [layers[k] for k in range(len(layers))]


@functools.cache
def layers() -> list[set[str]]:
    return read_layers(ARCHITECTURE.read_text())


def _name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _ancestors(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement of `tree`, those under `if TYPE_CHECKING:` and inside functions included
    (an annotation-only import is still an arrow between modules)."""
    return [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))]


def import_graph() -> dict[str, set[str]]:
    """{module: the perception_mtl modules that importing it runs directly}."""
    files = {_name(p): p for p in PACKAGE.rglob("*.py")}

    def resolve(name: str) -> str:
        while name not in files:
            name = name.rpartition(".")[0]
        return name

    graph = {}
    for module, path in files.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        targets = set()
        for node in _imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
            else:
                base = node.module or ""
                if node.level:  # relative: from the importer's package, `level - 1` packages up
                    up = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([node.module] if node.module else []))
                targets |= {f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names}
        deps = set()
        for target in (t for t in targets if t.split(".")[0] == PACKAGE.name):
            found = resolve(target)
            deps |= {found, *_ancestors(found)} - {module, *_ancestors(module)}
        graph[module] = deps
    return graph


def _reach(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for dep in graph[todo.pop()] - seen:
            seen.add(dep)
            todo.append(dep)
    return seen


def _unit(module: str) -> str:
    return module.split(".")[1] if "." in module else module


def test_the_graph_reads_the_imports():
    graph = import_graph()
    assert "perception_mtl.engine.builders" in graph["perception_mtl.engine.loop"]
    assert "perception_mtl.models" in graph["perception_mtl.tasks.seg"]  # through models.heads.dense
    assert "perception_mtl.tasks" not in graph["perception_mtl.tasks.seg"]  # its own package
    assert "perception_mtl.analysis.leaderboard" in graph["perception_mtl.benchmark.runner"]  # inside a function
    source = "if TYPE_CHECKING:\n    import a\nelse:\n    import b\nimport c\ndef f():\n    from d import e\n"
    assert sorted(ast.unparse(node) for node in _imports(ast.parse(source))) == [
        "from d import e", "import a", "import b", "import c"]


def test_no_import_cycle():
    try:
        TopologicalSorter(import_graph()).prepare()
    except CycleError as err:
        pytest.fail("import cycle: " + " imports ".join(reversed(err.args[1])))  # args[1]: dependency first


def test_the_layer_table_is_read_from_its_block():
    text = "# A\n\n## Layers\n\nprose\n\n```\n tools/*.py  any\n 1  b, c_d  top | more\n 0  a\n```\n\n```\n 2  x\n```\n"
    assert read_layers(text) == [{"a"}, {"b", "c_d"}]
    with pytest.raises(AssertionError, match="not numbered"):
        read_layers(text.replace(" 0  a", " 3  a"))


def test_each_layer_imports_only_layers_below():
    layer = {unit: k for k, units in enumerate(layers()) for unit in units}
    graph = import_graph()
    units = {_unit(m) for m in graph if m != PACKAGE.name}
    assert not units - set(layer), f"units missing from the table of {ARCHITECTURE}: {units - set(layer)}"
    assert not set(layer) - units, f"units in the table of {ARCHITECTURE} the package lacks: {set(layer) - units}"
    assert sum(map(len, layers())) == len(layer), f"a unit in two layers of the table of {ARCHITECTURE}"
    upward = sorted(f"{m} -> {d}" for m, deps in graph.items() for d in deps
                    if m != PACKAGE.name and d != PACKAGE.name and _unit(m) != _unit(d)
                    and layer[_unit(d)] >= layer[_unit(m)])
    assert not upward, "imports of the same or a higher layer:\n  " + "\n  ".join(upward)


@pytest.mark.parametrize("module, allowed", [
    ("perception_mtl.core.config", {"perception_mtl.core.errors", "perception_mtl.core.config_hints"}),
    ("perception_mtl.core.distributed", {"perception_mtl.core.errors"}),
])
def test_leaves_import_only_leaves(module, allowed):
    """The schema and the distributed helpers need nothing of the registries, models or engine."""
    assert _reach(import_graph(), module) <= allowed | {PACKAGE.name}


def test_models_never_import_tasks():
    graph = import_graph()
    reached = set().union(*(_reach(graph, m) for m in graph if _unit(m) == "models"))
    assert not {m for m in reached if _unit(m) == "tasks"}


def _seg_backbone(cfg, tasks: list[str]) -> dict[str, torch.Tensor]:
    model = PerTaskModel(cfg, {t: (lambda channels, strides: nn.Conv2d(channels, 1, 1)) for t in tasks})
    return model.backbones["seg"].state_dict()


def test_a_task_network_seed_ignores_other_tasks_and_the_registry(monkeypatch):
    cfg = merge_config(None, ["model.backbone=test_resnet", "model.weights=null"], defaults=None)
    alone = _seg_backbone(cfg, ["seg"])
    monkeypatch.setitem(TASKS._items, "aaa_new_task", object)  # a task registered ahead of seg by name
    beside = _seg_backbone(cfg, ["depth", "seg"])
    assert alone.keys() == beside.keys() and all(torch.equal(alone[k], beside[k]) for k in alone)
    other_seed = _seg_backbone(merge_config(None, ["model.backbone=test_resnet", "model.weights=null",
                                                   "train.seed=1"], defaults=None), ["seg"])
    assert not all(torch.equal(alone[k], other_seed[k]) for k in alone)
