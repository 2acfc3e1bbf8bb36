"""The one exception type for mistakes a user can fix (bad input, missing data, bad config)."""


class FewzeroError(Exception):
    """A user-facing error: the message is one line that says what is wrong and what to do.

    The CLI prints it without a traceback and exits with status 2.
    """


class DataNotFoundError(FewzeroError):
    """Data is missing and could not be downloaded."""
