"""A shim for tools that still call ``setup.py`` (older pip, ``mim install -e .``): all the
package's metadata is in pyproject.toml."""

from setuptools import setup

setup()
