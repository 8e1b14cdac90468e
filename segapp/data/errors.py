"""Errors about the user's data: one line that names the path, what was expected, and the fix."""

from segapp.errors import UserError


class DataError(UserError, ValueError):
    """The dataset at a configured path is missing, empty or inconsistent."""
