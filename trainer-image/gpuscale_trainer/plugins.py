"""Load a user's model or dataset function given as 'module:function'."""

import importlib
from collections.abc import Callable

from gpuscale_trainer.errors import InputError


def load_function(spec: str, option: str) -> Callable:
    """Import `module:function` and return the function; errors name `option` and `spec`."""
    module_name, separator, function_name = spec.partition(":")
    if not separator or not module_name or not function_name:
        raise InputError(f"{option} {spec!r} must have the form 'package.module:function'.")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise InputError(
            f"{option} {spec!r}: cannot import module {module_name!r} ({error}). "
            "Install it in the image or add its folder to PYTHONPATH."
        ) from None

    function = getattr(module, function_name, None)
    if not callable(function):
        raise InputError(f"{option} {spec!r}: module {module_name!r} has no function {function_name!r}.")
    return function
