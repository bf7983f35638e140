"""Features that need a package of an optional extra (``pyproject.toml``'s
``[project.optional-dependencies]``), which the default install leaves out.

Standard library only: the models and the engine both use it.
"""

from __future__ import annotations

import importlib
from types import ModuleType


class MissingExtraError(ImportError):
    """A feature needs a package that is not installed; the message names the extra to
    install (the tools report it as one ``error:`` line)."""


def import_extra(module: str, extra: str, feature: str) -> ModuleType:
    """``module``, imported; if it is missing, :class:`MissingExtraError` saying that
    ``feature`` needs it and to ``pip install 'hst_mm[extra]'``."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingExtraError(
            f"{feature} needs {module}, which is not installed: pip install 'hst_mm[{extra}]' ({e})"
        ) from e
