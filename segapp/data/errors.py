"""Errors about the user's data: one line that names the path, what was expected, and the fix."""

from segapp.errors import UserError


class DataError(UserError, ValueError):
    """The dataset at a configured path is missing, empty or inconsistent."""


class DuplicateFilesError(DataError):
    """Two files claim one name (stem or pairing key): pairing would keep one and drop the other.

    No layout fits such a folder better, so :func:`segapp.data.layouts.discover` raises it as is,
    without the closest-layout hint it adds to other errors.
    """
