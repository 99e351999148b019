"""The one error base of hccs_lab.

Everything the package raises on purpose (bad parameters, shapes, dtypes, files, missing tools) is
an `HCCSLabError` naming what is wrong and the numbers. The command line prints exactly these as one
line with exit status 2; any other exception is a bug and keeps its traceback. Each subclass also
derives from the matching built-in, so `except ValueError` in user code keeps working.
"""
from __future__ import annotations


class HCCSLabError(Exception):
    """A user-facing problem with the input, a file or the environment."""


class InputError(HCCSLabError, ValueError):
    """A value breaks a rule: parameters outside a target's constraints, shapes, NaN, corrupt files."""


class InputTypeError(HCCSLabError, TypeError):
    """The wrong kind of object or dtype (e.g. float logits where int8 rows are required)."""


class MissingError(HCCSLabError, FileNotFoundError):
    """A file, folder, package or tool that should be there is not."""


class ToolError(HCCSLabError, RuntimeError):
    """An external tool (g++, aie4ml, transformers) failed on input we gave it."""
