"""Errors that reach the user as one clear line instead of a stack trace."""

__all__ = ["BnafError"]


class BnafError(Exception):
    """Base class of every error the CLI reports as a plain message (exit status 2)."""
