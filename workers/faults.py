"""Whose fault was it: the job's, or the node's? And how to store an error so people can group it.

Batch schedulers learned to tell the two apart: a *job fault* follows the job wherever it runs (a
bad cell, a non-finite loss, a network too big for the card) and is charged to the job's attempts;
an *environment fault* belongs to the node that hit it (its data copy is missing, CUDA is broken,
the disk is full, the checkpoint store is unreachable, an import fails) and is never charged to
the job: the job goes back to pending and the node's health pays instead. An error we do not know
is neither yet: it is retried on another node, and becomes a job fault once it failed on two.
"""

from __future__ import annotations

import enum
import errno
import re
import traceback

# Stored errors are bounded: a traceback can be megabytes (a recursion), the table holds millions.
MAX_ERROR_CHARS = 4000
INNERMOST_FRAMES = 6  # of the traceback, kept whole: where the error is
MAX_SIGNATURE_CHARS = 200

# OSError numbers that say "this machine's storage is in trouble", not "this job is wrong".
_ENVIRONMENT_ERRNOS = {
    errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO, errno.EDQUOT, errno.ENOENT,
    errno.ESTALE, errno.ENOTCONN, errno.ETIMEDOUT, errno.ECONNREFUSED, errno.ECONNRESET,
    errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EMFILE, errno.ENFILE,
}
# Messages of CUDA and driver failures, whatever exception type carries them.
_CUDA_FAILURE = re.compile(
    r"CUDA error|CUDA driver|cuda runtime|no CUDA GPUs are available|CUDA is not available|"
    r"CUDNN_STATUS_(?:NOT_INITIALIZED|INTERNAL_ERROR|EXECUTION_FAILED)|NCCL error|"
    r"device-side assert|uncorrectable ECC|GPU is lost|Found no NVIDIA driver",
    re.IGNORECASE,
)


class FaultKind(enum.StrEnum):
    JOB = "job"  # charged to the job (retried within its attempts if the error says so)
    ENVIRONMENT = "environment"  # charged to the node; the job is released uncharged
    UNKNOWN = "unknown"  # retried on another node; a job fault once it failed on two


class EnvironmentFault(Exception):
    """Raised by a worker's own checks (its data copy, its device, its storage): the node is sick."""


def classify(exc: BaseException) -> FaultKind:
    """The kind of ``exc``, from its type and (for driver/CUDA errors) its message.

    The training errors (``farm.train_errors``) are job faults by construction, except an
    out-of-memory error on the host (the machine is short of memory, not the job too big for a
    card) and a device that is not there. A data error on a worker means its node's copy is bad.
    """
    from farm.data import DataError
    from farm.spec import InvalidCellError
    from farm.train_errors import BadInputError, OutOfMemoryError, TrainingError

    for link in _chain(exc):
        if isinstance(link, EnvironmentFault | DataError | ImportError | MemoryError):
            return FaultKind.ENVIRONMENT
        if isinstance(link, OSError) and (link.errno in _ENVIRONMENT_ERRNOS or
                                          isinstance(link, ConnectionError | TimeoutError)):
            return FaultKind.ENVIRONMENT
        if _CUDA_FAILURE.search(str(link)) and not isinstance(link, OutOfMemoryError):
            return FaultKind.ENVIRONMENT
    if isinstance(exc, OutOfMemoryError) and " on cpu" in str(exc):
        return FaultKind.ENVIRONMENT
    if isinstance(exc, BadInputError) and "not available here" in str(exc):
        return FaultKind.ENVIRONMENT  # the device asked for is missing on this node
    if isinstance(exc, InvalidCellError | TrainingError):
        return FaultKind.JOB
    return FaultKind.UNKNOWN


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and its causes/contexts (an OSError wrapped in a RuntimeError is still an OSError)."""
    seen: list[BaseException] = []
    link: BaseException | None = exc
    while link is not None and link not in seen and len(seen) < 10:
        seen.append(link)
        link = link.__cause__ or link.__context__
    return seen


def describe_error(exc: BaseException) -> str:
    """The error text stored on the job: the exception line, then the innermost frames of the
    traceback (where the error is), bounded to :data:`MAX_ERROR_CHARS`."""
    head = f"{type(exc).__name__}: {exc}".strip()
    frames = traceback.extract_tb(exc.__traceback__)
    inner = frames[-INNERMOST_FRAMES:]
    lines = [head]
    if len(frames) > len(inner):
        lines.append(f"  ... {len(frames) - len(inner)} outer frame(s) left out ...")
    lines += [line.rstrip("\n") for line in traceback.format_list(inner)]
    text = "\n".join(lines)
    if len(text) <= MAX_ERROR_CHARS:
        return text
    # Keep the head and the innermost end: the middle of a long message is the least telling.
    keep = MAX_ERROR_CHARS - 5
    return text[: keep // 2] + "\n...\n" + text[-(keep - keep // 2):]


_NORMALISERS = (
    (re.compile(r"(?:[A-Za-z]:)?(?:[\w.~-]*/)+[\w.-]*|s3://\S+|gs://\S+|file://\S+"), "<path>"),
    (re.compile(r"\b[0-9a-f]{8,}\b", re.IGNORECASE), "<hex>"),
    (re.compile(r"0x[0-9a-f]+", re.IGNORECASE), "<hex>"),
    (re.compile(r"[-+]?\b\d+(?:\.\d+)?(?:e[-+]?\d+)?\b", re.IGNORECASE), "<n>"),
    (re.compile(r"\s+"), " "),
)


def error_signature(error: str | BaseException) -> str:
    """A short key that groups errors of the same cause: the exception type and its message's first
    line with numbers, hashes and paths replaced (``RuntimeError: CUDA error at step <n>``)."""
    text = f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else str(error)
    first = text.strip().splitlines()[0] if text.strip() else "unknown error"
    for pattern, replacement in _NORMALISERS:
        first = pattern.sub(replacement, first)
    return first.strip()[:MAX_SIGNATURE_CHARS]


def is_retryable(exc: BaseException) -> bool:
    """Whether another attempt of a *job fault* might succeed.

    Typed training errors carry their verdict (non-finite loss and OOM: yes; bad input and corrupt
    checkpoints: no). A bare ``TrainingError`` says only "training failed" without a cause, so it
    is retried within the job's attempt budget, like a crash.
    """
    from farm.spec import InvalidCellError
    from farm.train_errors import TrainingError

    if isinstance(exc, InvalidCellError):
        return False
    if type(exc) is TrainingError:
        return True
    if isinstance(exc, TrainingError):
        return bool(exc.retryable)
    return False


def node_key(hostname: str, ray_node_id: str) -> str:
    """One machine (a Ray node), as stored in a job's history: ``host/<node id prefix>``."""
    return f"{hostname}/{ray_node_id[:12]}"


def node_key_of(worker_label: str | None) -> str:
    """The machine part of a worker label ``host/<node id>/pid<N>[/gpu<ids>]``."""
    return "/".join((worker_label or "").split("/")[:2])
