"""Errors a user can cause: the CLI prints their message and exits non-zero, no traceback."""


class UserError(Exception):
    """A mistake in input, configuration or environment that the user can fix."""
