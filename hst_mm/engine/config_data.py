"""Config text read as data, never run: the config mmengine saves in a checkpoint
(``meta['cfg']``) or dumps into a work dir (``<timestamp>/vis_data/config.py``).

``Config.fromstring`` / ``Config.fromfile`` execute the text as Python: a checkpoint or a
work dir from someone else would run code on load. mmengine dumps a config as assignments of
literals (numbers, strings, ``None``/``True``/``False``, lists, tuples, dicts and
``dict(key=value, ...)`` calls); exactly those are read here, with :mod:`ast`, and anything
else (an import, a call of another name, an attribute, an operator) is refused by name.
"""

from __future__ import annotations

import ast
import math
from typing import Any, Dict, Optional

from mmengine.config import Config

_NAMES = {'inf': math.inf, 'nan': math.nan}  # how mmengine dumps float('inf') / float('nan')


class ConfigDataError(ValueError):
    """Config text that is not plain data (names the source, the line and the construct)."""


def _value(node: ast.AST, source: str) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [_value(e, source) for e in node.elts]
        return items if isinstance(node, ast.List) else tuple(items)
    if isinstance(node, ast.Dict) and None not in node.keys:
        return {_value(k, source): _value(v, source) for k, v in zip(node.keys, node.values)}
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == 'dict'
        and not node.args
        and all(k.arg is not None for k in node.keywords)
    ):
        return {k.arg: _value(k.value, source) for k in node.keywords}
    if isinstance(node, ast.Name) and node.id in _NAMES:
        return _NAMES[node.id]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _value(node.operand, source)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return -value if isinstance(node.op, ast.USub) else value
    raise ConfigDataError(
        f'{source}: line {getattr(node, "lineno", "?")}: {ast.unparse(node)[:60]!r} is not '
        f'plain data (only literals and dict(...) are read, nothing is run)'
    )


def config_data(text: str, source: str, names: Optional[set] = None) -> Dict[str, Any]:
    """The top-level ``name = value`` assignments of config ``text`` as a dict, read as data.

    ``names``: read only these assignments (others are skipped unread); default all.
    Raises :class:`ConfigDataError` naming ``source`` for text that is not plain data.
    """
    try:
        tree = ast.parse(text, filename=source)
    except SyntaxError as e:
        raise ConfigDataError(f'{source}: line {e.lineno}: not config text ({e.msg})') from None
    data = {}
    for stmt in tree.body:
        if not (
            isinstance(stmt, ast.Assign)
            and len(stmt.targets) == 1
            and isinstance(stmt.targets[0], ast.Name)
        ):
            raise ConfigDataError(
                f'{source}: line {stmt.lineno}: {ast.unparse(stmt)[:60]!r} is not an '
                f'assignment of plain data (nothing is run)'
            )
        name = stmt.targets[0].id
        if names is None or name in names:
            data[name] = _value(stmt.value, source)
    return data


def config_from_text(text: str, source: str) -> Config:
    """An mmengine ``Config`` of dumped config ``text``, read as data (nothing is run)."""
    return Config(config_data(text, source))
