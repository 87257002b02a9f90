"""The one exception type the command line turns into a single error line."""


class KinestreamError(Exception):
    """A problem the user can fix: bad input, a missing file, a missing asset.

    The message says what was given and what is valid or what to do.
    """
