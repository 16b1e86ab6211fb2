"""The one base of every error crossfed raises on purpose, and the exit code it maps to.

An *expected* failure (bad data, a misspelled key, a broken file, a federation that lost its
platforms) is something a user can fix; the ``crossfed`` command shows it as one line and
exits with the code its class carries, never with a traceback. Anything that is not a
:class:`CrossfedError` is a bug and keeps its traceback.

Exit codes, the same for every command:

* ``1`` - the inputs were understood but cannot be used (data, files, state, a run that failed);
* ``2`` - the command line or configuration is wrong (unknown key, value out of range).
"""

from __future__ import annotations


class CrossfedError(Exception):
    """A failure the user can act on; ``exit_code`` is what the command line exits with."""

    exit_code: int = 1


class UsageError(CrossfedError):
    """The command line or a configuration value is wrong: nothing was run."""

    exit_code = 2
