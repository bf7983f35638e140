"""Install hst_mm: ``pip install -e .`` (the full stack: ``make install``)."""
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent


def requirements() -> list:
    lines = (HERE / 'requirements.txt').read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith('#')]


setup(
    name='hst_mm',
    version='0.1.0',
    description='Hierarchical Side-Tuning (HST) backbone for MMDetection 3.x and MMSegmentation 1.x',
    long_description=(HERE / 'README.md').read_text() if (HERE / 'README.md').exists() else '',
    long_description_content_type='text/markdown',
    packages=find_packages(include=['hst_mm', 'hst_mm.*']),
    python_requires='>=3.9',
    install_requires=requirements(),
    extras_require={
        'det': ['mmcv>=2.0.0,<2.2.0', 'mmdet>=3.0,<4'],
        'seg': ['mmcv>=2.0.0,<2.2.0', 'mmsegmentation>=1.0,<2'],
        'tests': ['pytest'],
    },
    license='Apache-2.0',
)
