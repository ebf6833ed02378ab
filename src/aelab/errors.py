"""User-facing errors.

Every mistake a user can make (a bad config, a missing or corrupt file, an unreachable source)
raises a subclass of :class:`AelabError` whose message is one line naming what is wrong and how
to fix it. The CLI prints ``error: <message>`` and exits with code 2 — no traceback.
"""

from __future__ import annotations

import sys


class AelabError(Exception):
    """A user-facing error: one line, says what is wrong and what to do."""

    exit_code = 2


class ConfigError(AelabError):
    """A config value is unknown, of the wrong type or out of range."""


class DataError(AelabError):
    """A data file is missing, corrupt, foreign, or no source could provide it."""


class TrainingError(AelabError):
    """Training cannot go on (for example the loss became NaN)."""


class WeightsError(AelabError):
    """A weights file is tampered with, truncated or does not match the model."""


_SAID: set[str] = set()


def say_once(line: str) -> None:
    """Print ``line`` (a note or warning for the user, not Python's warnings) on stderr the first
    time this process sees it: a check that runs twice says it once."""
    if line not in _SAID:
        _SAID.add(line)
        print(line, file=sys.stderr, flush=True)
