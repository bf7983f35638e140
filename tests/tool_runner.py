"""Run the project's command-line tools as a user would: subprocesses from the repo root."""

import contextlib
import functools
import glob
import importlib
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


def _command(args):
    return (
        [sys.executable, *map(str, args)] if str(args[0]).endswith('.py') else list(map(str, args))
    )


def _environment(env=None):
    return dict(
        os.environ,
        PATH=f'{VENV_BIN}{os.pathsep}{os.environ.get("PATH", "")}',
        PYTHONUNBUFFERED='1',
        **(env or {}),
    )


def _checked(proc):
    assert proc.returncode == 0, (
        f'{" ".join(proc.args)} exited {proc.returncode}:\n' + (proc.stdout + proc.stderr)[-6000:]
    )
    return proc


def run(args, timeout=900, env=None, check=True):
    """Run ``args`` (a python script and its arguments, or an executable) from the repo root.

    Returns the CompletedProcess; on failure the assertion shows the end of its output.
    """
    proc = subprocess.run(
        _command(args),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_environment(env),
    )
    return _checked(proc) if check else proc


def run_together(commands, timeout=900, cwd=ROOT, check=True):
    """``run`` for several commands started at once (a tool's start is seconds of imports on
    one core): their CompletedProcess, in order; with ``check``, any failure fails with its
    output's end."""
    procs = [
        subprocess.Popen(
            _command(args),
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_environment(),
        )
        for args in commands
    ]
    done = []
    for proc in procs:
        out, err = proc.communicate(timeout=timeout)
        done.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return [_checked(proc) for proc in done] if check else done


_RUNS = itertools.count()
# The tools that build mmengine's Runner from a config (--cfg-options).
RUNNER_TOOLS = ('tools/train.py', 'tools/test.py')


def run_main(args):
    """A tool's ``main(argv)`` in this process, from the repo root: ``args`` as for
    :func:`run` (``['tools/train.py', CONFIG, ...]``). For the tests that need what the tool
    does, not its process (a process start costs seconds of imports).

    Returns what ``main`` returns (None, or an exit status), or the code of the
    ``SystemExit`` it raises (its message, ``'error: ...'``, or an exit status); any other
    exception propagates (in a process: a traceback). Its output goes to pytest's ``capsys``.
    The environment is restored afterwards (the tools set ``LOCAL_RANK``). A Runner run gets a
    visualizer of its own: mmdet's and mmseg's configs name theirs ``'visualizer'``, and
    mmengine hands an existing instance of that name (with the earlier run's log folder) to
    a later Runner of the same process.
    """
    tool, argv = str(args[0]), [str(a) for a in args[1:]]
    if tool in RUNNER_TOOLS:
        name = f'visualizer.name=test_run_{next(_RUNS)}'
        if '--cfg-options' in argv:
            argv.insert(argv.index('--cfg-options') + 1, name)
        else:
            argv += ['--cfg-options', name]
    module = importlib.import_module(tool[: -len('.py')].replace('/', '.'))
    environ = dict(os.environ)
    try:
        with contextlib.chdir(ROOT):
            return module.main(argv)
    except SystemExit as e:
        return e.code
    finally:
        os.environ.clear()
        os.environ.update(environ)


def logged_steps(work_dir) -> list:
    """Training iterations logged in a work dir's newest run (mmengine's scalars.json)."""
    runs = sorted(glob.glob(os.path.join(str(work_dir), '*', 'vis_data', 'scalars.json')))
    assert runs, f'no scalars.json under {work_dir}'
    with open(runs[-1]) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [r['step'] for r in rows if 'loss' in r]


@functools.lru_cache(maxsize=None)
def ensure_toy_data():
    """data/toy generated (or found up to date) once per test session, in this process (the
    generator's command line is tested in tests/test_toy_data.py)."""
    from workshop.toy_data import main

    out = ROOT / 'data' / 'toy'
    assert main(['--out', str(out)]) == 0, f'toy data could not be written to {out}'
    return out
