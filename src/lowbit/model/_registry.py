"""The handler registry: which function replaces a layer for each config type (a leaf module).

``register_handler(ConfigType)`` decorates ``fn(module, name, config, statistic)
-> (new_module, scheme_label)``; ``get_handler(config)`` finds it (a subclass of
a registered config uses its parent's handler unless it registers its own);
``list_handlers()`` names the registered config types.  The built-in handlers
live in :mod:`lowbit.model._handlers`; nothing here imports them.

See :func:`register_handler` for a user's own config, registered and applied end to end.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lowbit._deprecation import warn_renamed
from lowbit.errors import ModelError, OptionError
from lowbit.model.config import Config, StatPlan

__all__ = ["Handler", "HandlerRecord", "register_handler", "get_handler", "list_handlers"]

Handler = Callable[[Any, str, Any, Any], tuple[Any, str]]
"""``fn(module, name, config, statistic) -> (new_module, scheme_label)``."""


@dataclass(frozen=True)
class HandlerRecord:
    """One registered config type and the function that replaces its layers.

    ``legacy_targets``/``legacy_statistics`` hold the callables of the deprecated
    three-argument ``register_handler(config_type, targets, statistics)``, for a config
    type that does not derive from :class:`Config`; otherwise the config says both.
    """

    config_type: type
    replace: Handler
    legacy_targets: Callable[[Any], tuple[type, ...]] | None = None
    legacy_statistics: Callable[[Any], StatPlan | None] | None = None

    def targets(self, config: Any) -> tuple[type, ...]:
        """The module types ``config`` replaces."""
        return self.legacy_targets(config) if self.legacy_targets is not None else config.targets()

    def statistics(self, config: Any) -> StatPlan | None:
        """What ``config`` needs from calibration batches (None: nothing)."""
        if self.legacy_targets is not None:
            return None if self.legacy_statistics is None else self.legacy_statistics(config)
        return config.statistics()


_REGISTRY: dict[type, HandlerRecord] = {}


def register_handler(
    config_type: type[Config],
    targets: Callable[[Any], tuple[type, ...]] | None = None,
    statistics: Callable[[Any], StatPlan | None] | None = None,
) -> Callable[[Handler], Handler]:
    """Register ``fn(module, name, config, statistic) -> (new_module, scheme_label)`` for a config type.

    The config declares what it replaces (``targets()``) and what calibration data it
    needs (``statistics()``); ``statistic`` is what that plan collected for the layer,
    or None. Registering a type again replaces its handler.

    ``targets`` and ``statistics`` are the deprecated spelling of 0.1 (callables of the
    config, for a config type that is not a :class:`Config`): they still work, with a warning.

    Raises:
        OptionError: ``config_type`` is not a subclass of :class:`lowbit.model.Config`.

    Example (a user's own config, registered and applied end to end):
        >>> from dataclasses import dataclass
        >>> import torch, lowbit.model as lm
        >>> @dataclass(frozen=True)
        ... class HalfWeights(lm.Config):
        ...     "Linear weights stored in bfloat16."
        ...     scheme = "bf16 weights"
        ...     def targets(self):
        ...         return (torch.nn.Linear,)
        >>> @lm.register_handler(HalfWeights)
        ... def _half(module, name, config, statistic):
        ...     new = torch.nn.Linear(module.in_features, module.out_features, module.bias is not None,
        ...                           dtype=torch.bfloat16)
        ...     new.load_state_dict(module.state_dict())
        ...     return new, config.scheme
        >>> net = torch.nn.Sequential(torch.nn.Linear(8, 8))
        >>> summary = lm.quantize_(net, HalfWeights())
        >>> summary.rows[0].scheme, summary.bytes_after < summary.bytes_before, "HalfWeights" in lm.list_handlers()
        ('bf16 weights', True, True)
    """
    if targets is not None and isinstance(config_type, type):
        warn_renamed("register_handler(config_type, targets, statistics)",
                     "a lowbit.model.Config subclass with targets() and statistics(), "
                     "and register_handler(config_type)")
    elif not (isinstance(config_type, type) and issubclass(config_type, Config)):
        raise OptionError(f"register_handler takes a subclass of lowbit.model.Config, got {config_type!r}")

    def decorate(fn: Handler) -> Handler:
        _REGISTRY[config_type] = HandlerRecord(config_type, fn, targets, statistics if targets is not None else None)
        return fn

    return decorate


def get_handler(config: Any) -> HandlerRecord:
    """The handler registered for ``config``'s type (or the nearest registered base class).

    Raises:
        ModelError: no handler is registered for it (the message lists the known configs).

    Example:
        >>> from lowbit.model import Dynamic
        >>> get_handler(Dynamic()).config_type is Dynamic
        True
    """
    for cls in type(config).__mro__:
        record = _REGISTRY.get(cls)
        if record is not None:
            return record
    known = ", ".join(list_handlers())
    raise ModelError(
        f"no handler for config {type(config).__name__}; known configs: {known} "
        "(register one with lowbit.model.register_handler)"
    )


def is_config(value: Any) -> bool:
    """A :class:`Config`, or an instance of a type registered the deprecated way (with targets).

    Example:
        >>> from lowbit.model import WeightOnly
        >>> is_config(WeightOnly()), is_config("int4")
        (True, False)
    """
    if isinstance(value, Config):
        return True
    return any(isinstance(value, t) for t, record in _REGISTRY.items() if record.legacy_targets is not None)


def list_handlers() -> list[str]:
    """Names of the config types that have a handler, in registration order.

    Example:
        >>> list_handlers()[:4]
        ['WeightOnly', 'Dynamic', 'Static', 'QAT']
    """
    return [cls.__name__ for cls in _REGISTRY]
