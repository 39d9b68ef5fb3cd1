"""The layers of botyard, checked on every module's imports (read from the AST, lazy imports included).

    botyard.components.base       contracts, errors, config, storage, table, data formats and checks,
                                  model store, model I/O, decision rule, scoring, featurizer, artifacts
                                  -> imports only itself
    botyard.components.<step>     ingest, validate, split, featurize, train, evaluate, register, gate,
                                  infra_check, deploy, fleet -> base, and its own package; never another step
    botyard.components.predictor  a service: base and its own package
    botyard.pipelines.trigger     a service beside the pipeline code: base and botyard.pipelines, never a step
    botyard.pipelines.*           pipeline definitions, KFP submission, CLI, benchmarks: anything below them

And no import cycle anywhere.
"""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

FOLDERS = {"components": "botyard.components", "pipelines": "botyard.pipelines"}
STEPS = ("ingest", "validate", "split", "featurize", "train", "evaluate", "register", "gate", "infra_check", "deploy", "fleet")
SERVICES = ("botyard.components.predictor", "botyard.pipelines.trigger")


def _modules() -> dict[str, Path]:
    found = {}
    for folder, package in FOLDERS.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            parts = list(path.relative_to(REPO / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([package, *parts])] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """botyard modules ``name`` imports (a ``from x import y`` counts as ``x.y`` when that is a module)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        else:
            continue
        out.update(t for t in targets if t.startswith("botyard.") and t != name)
    return out


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _layer(module: str) -> str:
    parts = module.split(".")
    if parts[:3] == ["botyard", "components", "base"]:
        return "base"
    if module.startswith(SERVICES):
        return next(s for s in SERVICES if module.startswith(s))
    if parts[:2] == ["botyard", "components"] and len(parts) > 2 and parts[2] in STEPS:
        return f"step:{parts[2]}"
    if parts[:2] == ["botyard", "pipelines"]:
        return "pipelines"
    return "components-root"


def _allowed(importer: str, imported: str) -> bool:
    mine, theirs = _layer(importer), _layer(imported)
    if theirs == "base":
        return True
    if mine == "base":
        return False
    if mine.startswith("step:") or mine == "botyard.components.predictor":
        return theirs == mine
    if mine == "botyard.pipelines.trigger":
        return theirs in (mine, "pipelines")
    if mine == "components-root":
        return False
    return True  # pipelines: the top layer


def test_every_module_keeps_to_its_layer():
    wrong = sorted(f"{a} ({_layer(a)}) imports {b} ({_layer(b)})" for a, deps in GRAPH.items() for b in deps if not _allowed(a, b))
    assert not wrong, "layer violations:\n" + "\n".join(wrong)


def test_every_step_is_in_the_layer_list():
    folders = sorted(p.name for p in (REPO / "components").iterdir() if (p / "__init__.py").exists())
    assert set(folders) == set(STEPS) | {"base", "predictor"}, "a new components/ package: add it to STEPS or SERVICES"


def _cycle() -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(GRAPH.get(node, ())):
            if dep not in GRAPH:
                continue
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for name in sorted(GRAPH):
        if name not in state:
            found = visit(name)
            if found:
                return found
    return None


def test_no_import_cycle():
    # a package's __init__ importing its own modules is how Python packages work, not a cycle
    cycle = _cycle()
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_checker_sees_a_violation():
    assert not _allowed("botyard.components.train.core", "botyard.components.evaluate.core")
    assert not _allowed("botyard.components.base.scoring", "botyard.components.train.core")
    assert not _allowed("botyard.pipelines.trigger.dispatcher", "botyard.components.ingest.core")
    assert _allowed("botyard.components.gate.core", "botyard.components.base.scoring")
