"""The layering the README promises, checked on the source: pipeline/ has no Prefect, model/
knows pipeline/ only through its contract (records) and file helpers, the records module
is a leaf, and the card package has no import cycles and no private helpers shared."""
from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def imports_of(path: Path) -> list[tuple[str, list[str]]]:
    """(module, imported names) of every import in a file, function-level ones included."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.append((node.module, [a.name for a in node.names]))
    return out


def files(folder: str) -> list[Path]:
    return sorted((REPO / folder).rglob("*.py"))


def test_pipeline_has_no_prefect_and_no_model():
    for path in files("pipeline"):
        for module, _ in imports_of(path):
            assert not module.startswith(("prefect", "flows", "model")), f"{path.relative_to(REPO)} imports {module}"


def test_model_knows_pipeline_only_through_records_and_io():
    allowed = {"pipeline.records", "pipeline.io"}
    for path in files("model"):
        for module, _ in imports_of(path):
            if module.startswith("pipeline"):
                assert module in allowed, f"{path.relative_to(REPO)} imports {module}"
            assert not module.startswith(("flows", "prefect")), f"{path.relative_to(REPO)} imports {module}"


def test_records_module_is_a_leaf():
    for module, _ in imports_of(REPO / "pipeline" / "records.py"):
        if module.startswith("pipeline"):
            assert module == "pipeline.io", module


def test_card_package_has_no_cycles_and_no_shared_private_helpers():
    card = REPO / "pipeline" / "card"
    graph = {}
    for path in card.glob("*.py"):
        name = path.stem
        deps = set()
        for module, names in imports_of(path):
            if module.startswith("pipeline.card"):
                assert module != "pipeline.card" or name == "__init__", f"card/{path.name} imports the package"
                private = [n for n in names if n.startswith("_")]
                assert not private, f"card/{path.name} imports private {private} from {module}"
                deps.add(module.removeprefix("pipeline.card."))
        graph[name] = deps

    def reaches(start, target, seen=()):
        return any(d == target or (d not in seen and reaches(d, target, seen + (d,))) for d in graph.get(start, ()))

    for name in graph:
        assert not reaches(name, name), f"import cycle through card/{name}.py"
