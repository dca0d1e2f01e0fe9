"""Every error privproxy raises on purpose; each says where and what to do."""

from __future__ import annotations


class PrivproxyError(Exception):
    """Base class of the errors a user can cause and fix."""


class ConfigError(PrivproxyError):
    """filters.yaml (or a command-line value) is invalid; carries file, line, column and a hint."""

    def __init__(self, message: str, *, path: str = "", line: int = 0, col: int = 0, hint: str = "") -> None:
        self.message = message
        self.path = path
        self.line = line
        self.col = col
        self.hint = hint
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.path or "<config>"
        if self.line:
            where = f"{where}:{self.line}:{self.col}"
        text = f"{where}: {self.message}"
        return f"{text} — {self.hint}" if self.hint else text


class ConfigErrors(PrivproxyError):
    """Several ConfigErrors found in one pass, so the operator fixes them all at once."""

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))
