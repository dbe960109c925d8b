"""fastmlp's modules import each other only downwards, and never in a cycle.

Every module of the imported package (the installed wheel in CI, found through
``fastmlp.__file__``) is parsed, and every import of a fastmlp module is an
edge, function-level (deferred) imports included: a deferred import hides a
cycle from Python, not from the design. Each module has a layer below; a module
may import its own layer or lower ones, never a higher one.
"""
import ast
import importlib.machinery
import os

import fastmlp

PACKAGE = "fastmlp"

# The layering. A module may import modules of its own layer or lower.
LAYERS = {
    # 0: foundations, importing no other fastmlp module (the compiled core is a leaf)
    "errors": 0, "_version": 0, "history": 0, "_validation": 0, "_params": 0,
    "_shuffle": 0, "_dropout": 0, "_sparse": 0, "datasets": 0, "progress": 0, "_preload": 0,
    "_kernels": 0,
    "_build": 0, "_csv": 0,
    # 1: machinery that knows no network class: the file format, reading other
    #    libraries' models, the fit loop (and its L-BFGS twin), BLAS threads, the ONNX graph
    "_format": 1, "_format_optim": 1, "_convert": 1, "_training": 1, "_lbfgs": 1,
    "_blas_threads": 1, "_onnx": 1,
    # the distributed fit's parts: agreement and update (0), steps and loop (1)
    "_mpi_agree": 0, "_mpi_update": 0, "_mpi_steps": 1, "_mpi_loop": 1,
    # 2: what both network classes share
    "_base": 2,
    # 3: the network classes
    "network": 3, "reference": 3,
    # 4: public tools over networks
    "io": 4, "interop": 4, "gradcheck": 4, "plot": 4, "distributed": 4, "dask": 4, "onnx": 4,
    # 5: the estimators and the demo
    "estimators": 5, "demo": 5, "_cli_mpi": 5,
    # 6: the command line
    "cli": 6,
    # 7: the package's own namespace and `python -m fastmlp`; nothing imports them
    "__init__": 7, "__main__": 7,
}


def _package_dir():
    return os.path.dirname(os.path.abspath(fastmlp.__file__))


def _modules(directory):
    """Module name -> source path (None for a compiled module)."""
    found = {}
    suffixes = sorted(importlib.machinery.EXTENSION_SUFFIXES, key=len, reverse=True)
    for entry in sorted(os.listdir(directory)):
        path = os.path.join(directory, entry)
        if not os.path.isfile(path):
            continue
        if entry.endswith(".py"):
            found[entry[:-3]] = path
        else:
            for suffix in suffixes:
                if entry.endswith(suffix):
                    found.setdefault(entry[:-len(suffix)], None)
                    break
    return found


def _targets(node, module, modules):
    """The fastmlp modules an import node (or import_module call) brings in."""
    def resolve(dotted):
        # 'fastmlp' -> __init__, 'fastmlp.x[.y]' -> x
        parts = dotted.split(".")
        if parts[0] != PACKAGE:
            return None
        return "__init__" if len(parts) == 1 else parts[1]

    def from_names(base, names):
        if base == "__init__":       # `from fastmlp import x`: submodule x, else the namespace
            return [n if n in modules else "__init__" for n in names]
        return [base]

    if isinstance(node, ast.Import):
        return [t for t in (resolve(a.name) for a in node.names) if t]
    if isinstance(node, ast.ImportFrom):
        names = [a.name for a in node.names]
        if node.level == 0:
            base = resolve(node.module or "")
            return from_names(base, names) if base else []
        # relative: the package is flat, so one level is the package itself
        if node.level > 1:
            raise AssertionError(f"{module}: relative import beyond the package (level {node.level})")
        base = node.module.split(".")[0] if node.module else "__init__"
        return from_names(base, names)
    if (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"):
        name = node.args[0].value
        if name.startswith("."):
            return [name[1:].split(".")[0] or "__init__"]
        t = resolve(name)
        return [t] if t else []
    return []


def import_graph(directory=None):
    """{module: {imported module: first line}} over the package's Python modules."""
    directory = directory or _package_dir()
    modules = _modules(directory)
    graph = {}
    for module, path in modules.items():
        edges = graph.setdefault(module, {})
        if path is None:
            continue
        with open(path, encoding="utf-8") as fh:
            tree = ast.parse(fh.read(), filename=path)
        for node in ast.walk(tree):
            for target in _targets(node, module, modules):
                if target != module:
                    edges.setdefault(target, node.lineno)
                    edges[target] = min(edges[target], node.lineno)
    return graph


def find_cycles(graph):
    """Cycles covering every strongly connected component of more than one
    module (Tarjan): the shortest cycle through each of its modules, e.g.
    ['a', 'b', 'c', 'a'], each cycle once."""
    index, low, stack, on_stack, comps = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(set(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    cycles = []
    for comp in comps:
        for start in sorted(comp):
            cycle = _cycle_through(graph, comp, start)
            first = cycle.index(min(cycle))          # one rotation per cycle
            cycle = cycle[first:-1] + cycle[:first] + [cycle[first]]
            if cycle not in cycles:
                cycles.append(cycle)
    return cycles


def _cycle_through(graph, comp, start):
    """A shortest cycle from ``start`` back to it, within its component."""
    paths, seen = [[start]], {start}
    while paths:
        nxt = []
        for path in paths:
            for w in sorted(graph.get(path[-1], ())):
                if w == start:
                    return path + [start]
                if w in comp and w not in seen:
                    seen.add(w)
                    nxt.append(path + [w])
        paths = nxt
    raise AssertionError("not a strongly connected component")  # pragma: no cover


def _describe(graph, cycle):
    return " -> ".join(f"{a} (line {graph[a][b]})" for a, b in zip(cycle, cycle[1:])) \
        + f" -> {cycle[-1]}"


# ---------------------------------------------------------------- the tests
def test_the_package_is_parsed_from_where_it_was_imported():
    graph = import_graph()
    assert {"__init__", "network", "_base", "io", "interop"} <= set(graph)
    assert "network" in graph["__init__"]          # the parser sees the package's imports


def test_every_module_has_a_layer():
    missing = sorted(set(import_graph()) - set(LAYERS))
    assert not missing, (f"modules without a layer: {missing}; add them to LAYERS in "
                         f"{__file__}")


def test_no_import_cycle():
    graph = import_graph()
    cycles = find_cycles(graph)
    assert not cycles, "import cycles (module (line of the import) -> ...):\n" + "\n".join(
        _describe(graph, c) for c in cycles)


def test_imports_only_go_down_the_layers():
    graph = import_graph()
    upward = [f"fastmlp/{a}.py line {line}: {a} (layer {LAYERS[a]}) imports {b} "
              f"(layer {LAYERS[b]})"
              for a, edges in sorted(graph.items())
              for b, line in sorted(edges.items(), key=lambda e: e[1])
              if a in LAYERS and b in LAYERS and LAYERS[b] > LAYERS[a]]
    assert not upward, "imports from a lower to a higher layer:\n" + "\n".join(upward)


def test_the_checks_catch_a_cycle_and_an_upward_import(tmp_path):
    # the checks themselves, on a made-up package: a -> b (deferred) -> a
    (tmp_path / "__init__.py").write_text("from . import a\n")
    (tmp_path / "a.py").write_text("from .b import f\n")
    (tmp_path / "b.py").write_text("def f():\n    from fastmlp import a\n    import fastmlp.c\n")
    (tmp_path / "c.py").write_text("import importlib\nimportlib.import_module('.a', 'fastmlp')\n")
    graph = import_graph(str(tmp_path))
    assert graph == {"__init__": {"a": 1}, "a": {"b": 1}, "b": {"a": 2, "c": 3}, "c": {"a": 2}}
    assert find_cycles(graph) == [["a", "b", "a"], ["a", "b", "c", "a"]]
    assert _describe(graph, ["a", "b", "a"]) == "a (line 1) -> b (line 2) -> a"
