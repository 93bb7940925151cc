"""Constructor arguments checked against their annotations, with errors that name the argument.

``checked(cls.__init__)`` wraps an ``__init__`` so that each argument passed for
a parameter annotated ``int``, ``float``, ``bool``, ``str``, ``Sequence[int]``
(or any of these ``| None``) is checked before the body runs::

    Dropout(rate="half")  ->  ArgumentError: Dropout(): rate must be a number, got rate='half' (str)

Other annotations are left to the class (value ranges, names of activations...).
``unidl.layers.Layer`` applies it to every layer class unidl ships. A leaf module.
"""
from __future__ import annotations

import functools
import inspect
import numbers
import typing
from typing import Any, Callable

import numpy as np


class ArgumentError(TypeError, ValueError):
    """A constructor argument of the wrong kind. Both a TypeError (Python's convention for a wrong
    type) and a ValueError (what Keras raises for a bad argument), so either ``except`` catches it."""


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _is_int_sequence(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and all(_is_int(v) for v in value)


# annotation -> (check, what the error calls it)
_CHECKS: dict[Any, tuple[Callable[[Any], bool], str]] = {
    int: (_is_int, "an integer"),
    float: (_is_number, "a number"),
    bool: (lambda v: isinstance(v, (bool, np.bool_)), "True or False"),
    str: (lambda v: isinstance(v, str), "a string"),
    typing.Sequence[int]: (_is_int_sequence, "a tuple of integers"),
    # a sample shape whose sizes may be unknown (None): sequences of any length
    typing.Sequence[typing.Optional[int]]: (lambda v: isinstance(v, (list, tuple)) and
                                            all(d is None or _is_int(d) for d in v),
                                            "a tuple of integers (None for a size known only at run time)"),
    tuple[int, ...]: (_is_int_sequence, "a tuple of integers"),
}


def _check_for(annotation: Any) -> tuple[Callable[[Any], bool], str, bool] | None:
    """(check, description, None allowed) for an annotation this module checks, else None."""
    if annotation in _CHECKS:
        return (*_CHECKS[annotation], False)
    args = typing.get_args(annotation)
    if args and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1 and rest[0] in _CHECKS:
            check, what = _CHECKS[rest[0]]
            return check, f"{what} or None", True
    return None


def _checks_of(init: Callable) -> tuple[inspect.Signature, dict]:
    """The signature of ``init`` and, per checked parameter, (check, description, None allowed)."""
    signature = inspect.signature(init)
    try:
        hints = typing.get_type_hints(init)
    except Exception:  # an annotation that does not evaluate: check nothing rather than fail
        return signature, {}
    return signature, {name: found for name, found in ((n, _check_for(hints.get(n))) for n in signature.parameters)
                       if found is not None}


def checked(init: Callable) -> Callable:
    """``init`` checking its annotated arguments first (see the module docstring).

    The annotations are read on the first call, not when the class is defined: ``import unidl``
    defines every layer class and must stay fast.
    """
    found: list = []

    @functools.wraps(init)
    def wrapper(self, *args, **kwargs):
        if not found:
            found.append(_checks_of(init))
        signature, checks = found[0]
        if checks:
            _check_arguments(type(self).__name__, signature, checks, self, args, kwargs)
        return init(self, *args, **kwargs)
    wrapper.__unidl_checked__ = True
    return wrapper


def _check_arguments(owner: str, signature: inspect.Signature, checks: dict, self, args, kwargs) -> None:
    try:
        bound = signature.bind_partial(self, *args, **kwargs)
    except TypeError:
        return  # let Python name the missing or extra argument when init runs
    for name, value in bound.arguments.items():
        if name in checks:
            check, what, optional = checks[name]
            if not (check(value) or (optional and value is None)):
                raise ArgumentError(f"{owner}(): {name} must be {what}, got {name}={value!r} "
                                    f"({type(value).__name__})")
