"""No import circle inside the hst_mm package, counting imports inside functions.

Each module is parsed (not imported), every import of an hst_mm module anywhere in it is an
edge of the graph, and the graph must have no cycle. An import placed inside a function to
break a circle still counts, so the circle it hides is found.
"""

import ast
from pathlib import Path
from typing import Dict, List, Optional, Set

import hst_mm

PACKAGE = Path(hst_mm.__file__).parent


def module_names() -> Dict[str, Path]:
    """``{'hst_mm.engine.hooks': .../hst_mm/engine/hooks/__init__.py, ...}``."""
    names = {}
    for path in sorted(PACKAGE.rglob('*.py')):
        parts = ['hst_mm', *path.relative_to(PACKAGE).with_suffix('').parts]
        if parts[-1] == '__init__':
            parts.pop()
        names['.'.join(parts)] = path
    return names


def imported_modules(name: str, path: Path, known: Set[str]) -> Set[str]:
    """The hst_mm modules that module ``name`` (file ``path``) imports, at any depth."""
    package = name if path.name == '__init__.py' else name.rpartition('.')[0]
    found = set()

    def add(target: Optional[str]) -> None:
        # 'a.b.c' of an unknown 'c' (an attribute): its module 'a.b'
        while target and target not in known:
            target = target.rpartition('.')[0]
        if target and target != name:
            found.add(target)

    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split('.')[0] == 'hst_mm':
                    add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split('.')
                base = base[: len(base) - node.level + 1]
                source = '.'.join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ''
            if source.split('.')[0] != 'hst_mm':
                continue
            for alias in node.names:
                # 'from . import models' imports a module, 'from .x import f' a name of x
                add(f'{source}.{alias.name}' if f'{source}.{alias.name}' in known else source)
    return found


def find_cycle(graph: Dict[str, Set[str]]) -> Optional[List[str]]:
    """One cycle of ``graph`` as a list of modules (first == last), or None."""
    state: Dict[str, int] = {}  # 1: on the current path, 2: done
    path: List[str] = []

    def visit(node: str) -> Optional[List[str]]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_no_import_circle_in_hst_mm():
    names = module_names()
    graph = {name: imported_modules(name, path, set(names)) for name, path in names.items()}
    cycle = find_cycle(graph)
    assert cycle is None, 'import circle: ' + ' -> '.join(cycle)


def test_a_circle_inside_a_function_is_found(tmp_path):
    """Two modules that import each other, one of them inside a function."""
    (tmp_path / 'a.py').write_text('from .b import g\n')
    (tmp_path / 'b.py').write_text('def g():\n    from .a import f\n    return f\n')
    known = {'hst_mm.a', 'hst_mm.b'}
    graph = {n: imported_modules(n, tmp_path / f'{n[7:]}.py', known) for n in known}
    assert find_cycle(graph) == ['hst_mm.a', 'hst_mm.b', 'hst_mm.a']
