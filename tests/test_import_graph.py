"""No two modules of mtbert_lib import each other, directly or in a loop (issue 22: the training ↔ beyond circle).

Every `import` counts, at the top of a module or inside a function: an import put inside a function to dodge a
circle is still a circle in the design. The package's __init__ is left out (importing any module runs it).
"""
import ast
from pathlib import Path

LIB = Path(__file__).resolve().parents[1] / "mtbert_lib"


def imports_of(path: Path) -> set:
    """The mtbert_lib modules a file imports (absolute `mtbert_lib.x` and relative `.x` / `from . import x`)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("mtbert_lib.")}
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level == 1 or mod == "mtbert_lib" or mod.startswith("mtbert_lib."):
                mod = mod.removeprefix("mtbert_lib").lstrip(".")
                found |= {mod.split(".")[0]} if mod else {a.name for a in node.names}
    return found


def graph() -> dict:
    modules = {p.stem: p for p in LIB.glob("*.py") if p.stem != "__init__"}
    return {m: sorted(imports_of(p) & set(modules) - {m}) for m, p in modules.items()}


def cycles(g: dict) -> list:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = n[0]; n[0] += 1
        stack.append(v); on.add(v)
        for w in g[v]:
            if w not in index:
                visit(w); low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop(); on.discard(w); comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in g:
        if v not in index:
            visit(v)
    return out


def test_the_finder_sees_every_kind_of_import(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("import mtbert_lib.a\nfrom mtbert_lib.b import x\nfrom . import c, d\nfrom .e import y\n"
                 "def f():\n    from mtbert_lib import g\n    from .h.i import z\n")
    assert imports_of(f) == {"a", "b", "c", "d", "e", "g", "h"}


def test_a_circle_is_found():
    assert cycles({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}) == [["a", "b", "c"]]
    assert cycles({"a": ["b"], "b": []}) == []


def test_mtbert_lib_has_no_import_circle():
    g = graph()
    assert {"training", "beyond", "precision"} <= set(g)
    assert cycles(g) == [], cycles(g)


def test_precision_sits_below_training_and_beyond():
    g = graph()
    assert g["precision"] == []  # imports no module of ours
    assert "precision" in g["training"] and "precision" in g["beyond"]
    assert "beyond" not in g["training"]  # the loop names no technique of notebook 11: beyond registers into it
