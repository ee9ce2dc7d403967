"""The lab's own error."""

from __future__ import annotations


class LabError(Exception):
    """The lab cannot do what was asked; the message says what failed and, where it can, what to do
    (``python -m lab`` prints it as one ``[lab] ERROR:`` line and exits 1)."""
