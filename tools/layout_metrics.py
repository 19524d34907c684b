"""Structure figures of the ``tfkd`` package: what a review of the layout counts.

    python tools/layout_metrics.py [--root .]

Prints the five largest modules, lines over 100 characters, functions over 60 lines, the
hooks of the plug-in base classes (required: they raise ``NotImplementedError``), and the
import graph between modules counting every import, those inside functions and those of a
package by its own submodules included: its strongly connected components (circles) and its
back-edges (an import of a module from one that it imports, directly or not).
"""

import argparse
import ast
import os
import sys

BASES = {"Method": "tfkd/methods/base.py", "Task": "tfkd/tasks/base.py"}


def modules(root):
    """``{module name: path}`` of every module under ``root/tfkd``."""
    found = {}
    for folder, _, files in os.walk(os.path.join(root, "tfkd")):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                rel = os.path.relpath(path, root)[:-3].replace(os.sep, ".")
                found[rel[: -len(".__init__")] if rel.endswith(".__init__") else rel] = path
    return found


def imports(path, name, known):
    """The tfkd modules ``path`` (module ``name``) imports, anywhere in it."""
    tree = ast.parse(open(path, encoding="utf-8").read())
    package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            # a submodule by name, else the module (package) that defines the name
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def strongly_connected(graph):
    """Tarjan's components with more than one module (the circles)."""
    index, low, stack, on_stack, result, counter = {}, {}, [], set(), [], [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                result.append(sorted(component))

    sys.setrecursionlimit(10000)
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return result


def back_edges(graph):
    """Edges that close a circle in a depth-first walk from every module, sorted."""
    state, edges = {}, []

    def walk(node):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                edges.append((node, nxt))
            elif nxt not in state:
                walk(nxt)
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            walk(node)
    return edges


def hooks(root, path, class_name):
    """``(required, optional)`` public methods of ``class_name`` in ``path``."""
    tree = ast.parse(open(os.path.join(root, path), encoding="utf-8").read())
    required, optional = [], []
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and not item.name.startswith("_"):
                    raises = any(
                        isinstance(n, ast.Raise) and "NotImplementedError" in ast.unparse(n) for n in ast.walk(item)
                    )
                    (required if raises else optional).append(item.name)
    return required, optional


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=os.path.join(os.path.dirname(__file__), ".."))
    args = parser.parse_args(argv)
    root = os.path.abspath(args.root)
    known = modules(root)
    sizes = sorted(((sum(1 for _ in open(p, encoding="utf-8")), n) for n, p in known.items()), reverse=True)
    print("largest modules:", ", ".join(f"{n} {size}" for size, n in sizes[:5]))
    print("modules over 500 lines:", sum(1 for size, _ in sizes if size > 500))
    long_lines, long_functions = 0, []
    for name, path in known.items():
        text = open(path, encoding="utf-8").read()
        long_lines += sum(1 for line in text.splitlines() if len(line) > 100)
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > 60:
                    long_functions.append((length, f"{name}.{node.name}"))
    print("lines over 100 characters:", long_lines)
    print(
        f"functions over 60 lines: {len(long_functions)}:",
        ", ".join(f"{n} {length}" for length, n in sorted(long_functions, reverse=True)),
    )
    for class_name, path in BASES.items():
        if os.path.exists(os.path.join(root, path)):
            required, optional = hooks(root, path, class_name)
            print(f"{class_name} hooks: {len(required)} required, {len(optional)} optional")
    graph = {name: imports(path, name, known) for name, path in known.items()}
    circles = strongly_connected(graph)
    print(f"import circles (every import counted): {len(circles)}")
    for component in circles:
        print("  ", " <-> ".join(component))
    edges = back_edges(graph)
    print(f"back-edges: {len(edges)}")
    for source, target in edges:
        print(f"   {source} -> {target}")


if __name__ == "__main__":
    main()
