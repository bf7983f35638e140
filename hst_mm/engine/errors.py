"""Errors the tools report as a diagnosis (one ``error:`` line, exit status 1), not a traceback."""

from __future__ import annotations

from typing import Optional

from ..datasets.seg_labels import SegLabelError
from ..extras import MissingExtraError
from ..models import PretrainedMismatchError
from ..models.pretrained import PretrainedNotFoundError, unpickling_error
from .checkpoint_safety import incomplete_checkpoint, refused_checkpoint_message
from .hooks import NonFiniteLossError, WorkDirLockedError
from .hooks.checkpoint_fit import CheckpointMismatchError


def user_error_message(exc: BaseException, checkpoint: Optional[str] = None) -> Optional[str]:
    """The message for an error caused by the user's files or data, or None for a bug.

    ``checkpoint``: the weight file the tool was loading (load_from, --resume, the test or
    demo checkpoint), named in the message because torch's error does not name it.
    """
    if isinstance(
        exc,
        (
            PretrainedMismatchError,
            NonFiniteLossError,
            CheckpointMismatchError,
            WorkDirLockedError,
            MissingExtraError,
        ),
    ):
        return str(exc)
    if isinstance(exc, SegLabelError):
        return _original_message(exc)
    if isinstance(exc, PretrainedNotFoundError):
        return str(exc)
    refused = unpickling_error(exc)
    if refused is not None:
        return refused_checkpoint_message(checkpoint or 'the checkpoint', refused)
    problem = incomplete_checkpoint(checkpoint) if checkpoint else None
    if problem:  # torch's error (EOFError, OSError, PytorchStreamReader ...) names no file
        return f'{checkpoint}: {problem}; use another copy or an earlier checkpoint'
    return None


def _original_message(exc: BaseException) -> str:
    """The message an exception was raised with, also when a DataLoader worker raised it:
    torch re-raises it in the main process as ``Caught <Type> in DataLoader worker process
    N.\nOriginal Traceback ...\n<module>.<Type>: <message>``."""
    text = str(exc)
    if not text.startswith('Caught '):
        return text
    marker = f'{type(exc).__name__}: '
    return text[text.rfind(marker) + len(marker) :].strip() if marker in text else text
