"""Pipeline interfaces built from data: a pipeline function with a signature made of parameters.

KFP reads a pipeline's inputs from ``inspect.signature`` of the decorated function and calls it
with one channel per input, in order; ``pipeline_function`` builds such a function around a
body that takes a dict. That lets a pipeline take every ``TrainConfig`` field as a parameter
(names, types and defaults read from the dataclass) without writing them out again, and lets
the fleet pipeline take exactly the per-bot pipeline's inputs.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

NO_DEFAULT = inspect.Parameter.empty


def parameter(name: str, kind: type, default: Any = NO_DEFAULT) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default, annotation=kind)


def config_parameters(config_class) -> list[inspect.Parameter]:
    """One pipeline parameter per field of a ``ConfigBase`` dataclass, with its type and default."""
    return [parameter(name, kind, default) for name, kind, default in config_class.parameter_fields()]


def pipeline_function(body: Callable[[dict], Any], name: str, params: list[inspect.Parameter], returns=inspect.Signature.empty):
    """A function with the given signature for ``dsl.pipeline``, calling ``body`` with a dict of its arguments."""
    names = [p.name for p in params]

    def function(*args):
        return body(dict(zip(names, args)))

    function.__signature__ = inspect.Signature(params, return_annotation=returns)
    function.__name__ = function.__qualname__ = name
    return function
