"""One exception family for everything a user can get wrong; the CLI prints it as one line.

Exit codes: 2 for usage errors (a flag, a value, a spec), 1 for failures (data, weights, a crashed run).
"""


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


class TrainingDiverged(BenchError):
    """A loss or a weight became non-finite (nan/inf): the run stops as failed and is never scored."""


class MetricUnavailable(BenchError):
    """A metric cannot be computed here (e.g. its weights are absent); the reason is the message."""


def closest(name: str, choices) -> str:
    """Return ' (did you mean X?)' for the closest choice, or '' when nothing is close."""
    import difflib

    match = difflib.get_close_matches(name, list(choices), n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""
