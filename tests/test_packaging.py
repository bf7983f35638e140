"""The installed package is the product alone: the wheel built from the repository holds
``hst_mm`` and its data, nothing of the workshop, no module that reads a checkout, and every
module in it imports from a folder outside the checkout."""

import ast
import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# What a module that reads a checkout names in its code: the folders above the package, the
# checkout's configs or data (docstrings and comments may mention the checkout's files). One
# that imports the workshop fails the import test below.
READS_CHECKOUT = re.compile(r"parents\[|configs/|data/toy|['\"]\.\.['\"]")


def _code(source: str) -> str:
    """A module's code without its docstrings and comments."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, 'body', None)
        if (
            isinstance(body, list)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            body[0] = ast.Pass()
    return ast.unparse(tree)


@pytest.fixture(scope='module')
def wheel(tmp_path_factory) -> Path:
    """The wheel of a copy of the repository (the build leaves the checkout untouched)."""
    tmp = tmp_path_factory.mktemp('wheel')
    src = tmp / 'src'
    shutil.copytree(
        ROOT,
        src,
        ignore=shutil.ignore_patterns(
            '.git', '.venv', 'data', 'work_dirs', 'build', '*.egg-info', '__pycache__'
        ),
    )
    proc = subprocess.run(
        [sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-q']
        + ['-w', str(tmp / 'dist'), str(src)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (path,) = (tmp / 'dist').glob('hst_mm-*.whl')
    return path


def _modules(wheel: Path):
    """{dotted module name: source} of every Python file in the wheel."""
    with zipfile.ZipFile(wheel) as z:
        return {
            name[: -len('.py')].replace('/', '.').removesuffix('.__init__'): z.read(name).decode()
            for name in z.namelist()
            if name.endswith('.py')
        }


@pytest.mark.slow
def test_wheel_holds_the_product_only(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
    assert {n.split('/')[0] for n in names} == {'hst_mm', wheel.name.split('-py')[0] + '.dist-info'}
    assert 'hst_mm/analysis/paper_results.yaml' in names  # the package data came along
    modules = _modules(wheel)
    assert 'hst_mm.models.hst' in modules and 'hst_mm.engine.inference' in modules
    assert not [m for m in modules if re.search('workshop|benchmark|toy_data|gpu_check', m)]
    assert not {m for m, text in modules.items() if READS_CHECKOUT.search(_code(text))}


@pytest.mark.slow
def test_every_module_of_the_wheel_imports_outside_the_checkout(wheel, tmp_path):
    site = tmp_path / 'site'
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)
    modules = sorted(_modules(wheel))
    code = (
        'import importlib, json, sys\n'
        f'files = {{m: importlib.import_module(m).__file__ for m in {modules!r}}}\n'
        'print(json.dumps(files))\n'
    )
    elsewhere = tmp_path / 'elsewhere'
    elsewhere.mkdir()
    proc = subprocess.run(
        [sys.executable, '-c', code],
        cwd=elsewhere,
        env={'PYTHONPATH': str(site), 'PATH': '/usr/bin:/bin', 'HOME': str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    files = json.loads(proc.stdout.strip().splitlines()[-1])
    assert sorted(files) == modules
    outside = {m: f for m, f in files.items() if not Path(f).is_relative_to(site)}
    assert not outside, outside
