"""The one place hst_mm's version is written (pyproject.toml reads it)."""

__version__ = '0.2.0'
