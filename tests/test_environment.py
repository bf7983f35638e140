"""The installed stack is the one requirements/pins.txt pins and docs/install.md states (the
extras included: `make test` installs those the tests need)."""

import re
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest

pytestmark = pytest.mark.env  # the installed, pinned stack

ROOT = Path(__file__).resolve().parents[1]
PINS = dict(
    line.split('==')
    for line in (ROOT / 'requirements' / 'pins.txt').read_text().split()
    if '==' in line
)


def installed(dist: str) -> str:
    if dist == 'mmcv':  # the default build is the pure-Python distribution mmcv-lite
        for name in ('mmcv', 'mmcv-lite'):
            try:
                return version(name)
            except PackageNotFoundError:
                pass
    return version(dist)


@pytest.mark.parametrize('dist', sorted(PINS))
def test_installed_versions_are_the_pinned_ones(dist):
    assert installed(dist).split('+')[0] == PINS[dist], f'{dist} {installed(dist)} != {PINS[dist]}'


def test_mmcv_reports_the_pinned_version():
    import mmcv

    assert mmcv.__version__ == PINS['mmcv']


def test_install_docs_state_the_pinned_versions():
    doc = (ROOT / 'docs' / 'install.md').read_text()
    for dist, pin in PINS.items():
        # "mmcv 2.1.0", "**mmcv** 2.1.0" or a table row "| mmcv | 2.1.0 |"
        assert re.search(rf'\b{dist}[\s*|]+{re.escape(pin)}\b', doc), (
            f'docs/install.md does not state {dist} {pin}'
        )


@pytest.mark.slow  # a fresh interpreter outside the checkout
def test_hst_mm_is_installed_in_the_venv():
    """mim and custom_imports need hst_mm importable from anywhere (pip install -e .)."""
    out = subprocess.run(
        [sys.executable, '-c', 'import hst_mm; print(hst_mm.__file__)'],
        cwd='/',
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert Path(out.strip()).resolve().is_relative_to(ROOT)
