"""User-facing errors. Every message is Japanese and names what was wrong and what was expected."""


class HsutilsError(Exception):
    """Base class for mistakes a user can fix (bad input, bad parameters). The CLI prints
    the message without a traceback."""


class DataError(HsutilsError):
    """An input file cannot be used (encoding, missing columns, empty...)."""


class ParameterError(HsutilsError):
    """A parameter file or value is invalid."""
