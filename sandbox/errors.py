"""One error hierarchy whose messages are written for the person reading them.

Every error knows where it comes from (file, line, column, field path) so the
CLI can print a single `file:line:col: field: message` line, and which exit
code it maps to.  The CLI is the only place that turns these into exit codes.
"""

from __future__ import annotations

from ._record import record

# Exit codes (documented in docs/cli.md): 0 ok, 1 invalid input or failed
# check, 2 usage, 3 refused by policy.  `sandbox run` maps pre-start failures
# to 125/126/127 the way Docker does.
EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = 2
EXIT_REFUSED = 3
EXIT_RUN_FAILED = 125
EXIT_CANNOT_INVOKE = 126
EXIT_NOT_FOUND = 127


@record
class Location:
    file: str | None = None
    line: int | None = None  # 1-based
    col: int | None = None  # 1-based

    def __str__(self) -> str:
        parts = [self.file or "<input>"]
        if self.line is not None:
            parts.append(str(self.line))
            if self.col is not None:
                parts.append(str(self.col))
        return ":".join(parts)


class SandboxError(Exception):
    """Base of every error sandbox reports to a person."""

    exit_code = EXIT_INVALID

    def __init__(
        self,
        message: str,
        *,
        location: Location | None = None,
        field: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.location = location
        self.field = field
        self.hint = hint

    def __str__(self) -> str:
        head = []
        if self.location is not None:
            head.append(str(self.location))
        if self.field:
            head.append(self.field)
        text = ": ".join([*head, self.message])
        if self.hint:
            text += f" ({self.hint})"
        return text


class UsageError(SandboxError):
    exit_code = EXIT_USAGE


class ProfileError(SandboxError):
    """A profile cannot be read, parsed or validated."""


class ProfileErrors(ProfileError):
    """Several validation errors in one profile, reported together."""

    def __init__(self, errors: list[ProfileError]) -> None:
        super().__init__("; ".join(str(e) for e in errors))
        self.errors = errors

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)


class BundleError(SandboxError):
    """An OCI bundle or its config.json cannot be read or is malformed."""


class ConfigError(SandboxError):
    """The operator configuration cannot be read or is malformed."""


class PolicyRefusal(SandboxError):
    """The profile forbids what the bundle asks for; nothing may start."""

    exit_code = EXIT_REFUSED

    def __init__(self, message: str, *, profile: str | None = None, reasons: list[str] | None = None,
                 **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.profile = profile
        self.reasons = reasons or [message]


class RuncError(SandboxError):
    """The real runc is missing, not executable, or failed."""

    exit_code = EXIT_RUN_FAILED


class AuditError(SandboxError):
    """The audit log cannot be written (fail closed) or read."""


class AuditIntegrityError(AuditError):
    """The audit log's hash chain is broken: a record was edited, removed or reordered."""


class InspectError(SandboxError):
    """Live kernel state of a container cannot be read."""
