"""One exception family for everything a user can get wrong; the CLI prints it as one line.

Exit codes: 2 for usage errors (a flag, a value, a spec), 1 for failures (data, weights, a crashed run).
"""

import errno


class BenchError(Exception):
    """A problem the user can act on. The message says what is wrong and what to do."""

    exit_code = 1


class UsageError(BenchError):
    """A flag, option or value is wrong."""

    exit_code = 2


class ConfigError(UsageError):
    """A configuration value or key is invalid (names the key and the accepted values)."""


class UnknownNameError(UsageError):
    """A registry lookup failed (names the registry, the closest match and every valid name)."""


class DataError(BenchError):
    """A dataset is missing, incomplete or malformed (names the path)."""


class DownloadError(DataError):
    """A download failed or did not verify (names the URL or file)."""


class CheckpointError(BenchError):
    """A checkpoint is missing, truncated, corrupt or incompatible (names the file)."""


class DiskFullError(BenchError):
    """A write failed because the file system is full (or over quota); names the file being written."""


#: errno values that mean "the disk is full": no space, over quota, file too large for the file system.
DISK_FULL_ERRNOS = tuple(getattr(errno, name) for name in ("ENOSPC", "EDQUOT", "EFBIG") if hasattr(errno, name))


def disk_full(exc: BaseException, path, what: str = "") -> "DiskFullError | None":
    """A DiskFullError for an OSError that means the disk is full while writing `path`, else None."""
    if not isinstance(exc, OSError) or exc.errno not in DISK_FULL_ERRNOS:
        return None
    detail = f" ({what})" if what else ""
    return DiskFullError(f"no space left on device writing {path}{detail}; free some space (or write elsewhere, "
                         "e.g. --out DIR), then run the same command again (a run continues with --resume)")


class TrainingDiverged(BenchError):
    """A loss or a weight became non-finite (nan/inf): the run stops as failed and is never scored."""


class MetricUnavailable(BenchError):
    """A metric cannot be computed here (e.g. its weights are absent); the reason is the message."""


def closest(name: str, choices) -> str:
    """Return ' (did you mean X?)' for the closest choice, or '' when nothing is close."""
    import difflib

    match = difflib.get_close_matches(name, list(choices), n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""
