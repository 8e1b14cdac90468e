"""Errors about the user's data: one line that names the path, what was expected, and the fix."""

from segapp.errors import UserError


class DataError(UserError, ValueError):
    """The dataset at a configured path is missing, empty or inconsistent."""


class DuplicateFilesError(DataError):
    """Two files claim one name (stem or pairing key): pairing would keep one and drop the other.

    No layout fits such a folder better, so :func:`segapp.data.layouts.discover` raises it as is,
    without the closest-layout hint it adds to other errors.
    """


class LayoutError(DataError):
    """No layout pairs the folder as asked, but ``layout`` with ``options`` pairs ``n_pairs`` images.

    Raised by :func:`segapp.data.layouts.discover` so that callers that fall back to another
    reading of the folder (``segapp-eval --gt``: a folder of masks only) can tell a dataset that
    needs other settings from a folder that is no dataset at all.
    """

    def __init__(self, message: str, layout: str, options: dict, n_pairs: int) -> None:
        super().__init__(message)
        self.layout, self.options, self.n_pairs = layout, dict(options), n_pairs
