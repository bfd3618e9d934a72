"""Converter diagnostics, worded and ordered as Alloy's converter prints them.

Users migrating from Alloy compare reports line by line, so the severity
names, the ``(Error) summary`` layout and the report footers are Alloy's.
Shoal adds one thing: where the problem is in the source file (``path``),
printed as an indented ``at ...`` line under the summary.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class Severity(IntEnum):
    INFO = 1
    WARN = 2
    ERROR = 3
    CRITICAL = 4

    def label(self) -> str:
        return {1: "Info", 2: "Warning", 3: "Error", 4: "Critical"}[int(self)]


@dataclass(frozen=True)
class Diagnostic:
    severity: Severity
    summary: str
    detail: str = ""
    path: str = ""

    def __str__(self) -> str:
        text = f"({self.severity.label()}) {self.summary}"
        if self.path:
            text += f"\n\tat {self.path}"
        if self.detail:
            text += "\n" + self.detail
        return text


class Diagnostics(list[Diagnostic]):
    def add(self, severity: Severity, summary: str, path: str = "", detail: str = "") -> None:
        self.append(Diagnostic(severity, summary, detail, path))

    def unsupported(self, name: str, path: str) -> None:
        """Alloy's wording for a setting the converter has to leave out."""
        self.add(
            Severity.ERROR,
            f"The converter does not support converting the provided {name} config.",
            path,
        )

    def has(self, severity: Severity) -> bool:
        return any(d.severity == severity for d in self)

    def text(self) -> str:
        return "\n".join(str(d) for d in self)


_CRITICAL_FOOTER = (
    "\n\nA configuration file was not generated due to critical issues. "
    "Refer to the critical messages for more information."
)
_ERROR_FOOTER = (
    "\n\nA configuration file was not generated due to errors. "
    "Refer to the error messages for more information.\n\n"
    "You can bypass the errors by using the --bypass-errors flag. "
    "Bypassing errors isn't recommended for production environments."
)
_SUCCESS_FOOTER = "\n\nA configuration file was generated successfully."


def report(diags: Diagnostics, bypass_errors: bool) -> str:
    """The ``--report`` text: what failed the conversion, or everything and success."""
    if diags.has(Severity.CRITICAL):
        kept = [d for d in diags if d.severity == Severity.CRITICAL]
        footer = _CRITICAL_FOOTER
    elif diags.has(Severity.ERROR) and not bypass_errors:
        kept = [d for d in diags if d.severity >= Severity.ERROR]
        footer = _ERROR_FOOTER
    else:
        kept = list(diags)
        footer = _SUCCESS_FOOTER
    return "\n".join(str(d) for d in kept) + footer
