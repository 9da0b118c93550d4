"""common/ in layers: few modules at the top, subpackages by layer, no import cycle, and the
old module paths kept as aliases of the new ones."""
import ast
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

COMMON = ROOT / "common"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    return (ROOT / (name.replace(".", "/") + ".py")).exists()


def imports_of(path: Path) -> set:
    """Every common module this file imports, at module level or inside a function."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("common")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = ".".join(base[:len(base) - node.level + 1])
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module or ""
            if mod.startswith("common"):
                # `from pkg import module` names a module where one exists
                out |= {f"{mod}.{a.name}" if is_module(f"{mod}.{a.name}") else mod
                        for a in node.names}
    return out


def test_common_has_at_most_ten_top_level_modules_and_layer_packages():
    top = sorted(p.name for p in COMMON.glob("*.py"))
    assert len(top) <= 10, top
    packages = sorted(p.name for p in COMMON.iterdir() if (p / "__init__.py").exists())
    assert {"models", "inference", "runs", "results", "speed", "reporting"} <= set(packages)


def test_no_import_cycle_between_common_modules():
    files = {module_name(p): p for p in COMMON.rglob("*.py")}
    graph = {m: {d for d in imports_of(p) if d in files and d != m} for m, p in files.items()}
    # a package's __init__ is not an edge target for its own modules (Python loads it first)
    for m in graph:
        graph[m] = {d for d in graph[m] if not m.startswith(d + ".")}
    seen, stack, cycles = set(), [], []

    def visit(m):
        if m in stack:
            cycles.append(stack[stack.index(m):] + [m])
            return
        if m in seen:
            return
        seen.add(m)
        stack.append(m)
        for d in sorted(graph[m]):
            visit(d)
        stack.pop()
    for m in sorted(graph):
        visit(m)
    assert not cycles, [" -> ".join(c) for c in cycles]


def test_old_module_paths_are_the_new_modules_and_still_run_with_python_m():
    import common.gaps as old
    import common.inference.gaps as new
    from common.train import train
    from common.runs import train as runs_train
    assert old is new and new.__spec__.name == "common.inference.gaps"
    assert train is runs_train.train
    # python -m with an old path runs the new module as __main__: the same usage line and exit
    runs = [subprocess.run([sys.executable, "-m", name], cwd=ROOT, capture_output=True,
                           text=True, timeout=60) for name in ("common.steptime",
                                                                "common.speed.steptime")]
    assert runs[0].returncode == runs[1].returncode == 2
    assert runs[0].stderr == runs[1].stderr and "usage: python -m" in runs[0].stderr


def test_the_cycle_check_sees_a_cycle(tmp_path, monkeypatch):
    """The check above can fail: two modules importing each other (as bench and machine did)."""
    import test_layout
    a, b = tmp_path / "common" / "a.py", tmp_path / "common" / "b.py"
    a.parent.mkdir()
    a.write_text("def f():\n    from .b import g\n")
    b.write_text("from .a import f\n")
    (tmp_path / "common" / "__init__.py").write_text("")
    monkeypatch.setattr(test_layout, "ROOT", tmp_path)
    monkeypatch.setattr(test_layout, "COMMON", tmp_path / "common")
    try:
        test_layout.test_no_import_cycle_between_common_modules()
    except AssertionError as err:
        assert "common.a -> common.b -> common.a" in str(err)
    else:
        raise AssertionError("the cycle check missed a -> b -> a")
