"""The one error type for unusable input; the CLI turns it into exit code 2."""

from __future__ import annotations


class InputError(Exception):
    """Bad usage or unusable input. The message is one line saying what and where."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))
