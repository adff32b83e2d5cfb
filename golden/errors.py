"""Errors shared by the golden decoder and container (one class, so callers catch one thing)."""

from __future__ import annotations


class ContainerError(ValueError):
    """A coded tile, DRAM image or .fmc file that is malformed, corrupt or does not match the
    profile it is decoded with. The message says what is wrong and where."""
