"""Optional packages (setup.py's extras): imported where a feature needs one, so that without it the feature is one
line naming the pip command, not a traceback from an import at the top of a module."""
import importlib
from types import ModuleType

from common.errors import TrainingError


class MissingPackage(TrainingError):
    """An optional package a feature needs is not installed; a TrainingError, so that a script prints its one line
    (harness.cli.run_main: exit code 2)."""


def optional(module: str, missing: str) -> ModuleType:
    """`module`, imported; MissingPackage(`missing`) where it cannot be: the feature, the package and the pip command
    that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingPackage(missing) from None
