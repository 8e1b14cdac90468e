"""The net registry: one factory, ``create_net(name, **kwargs)``, over an explicit table.

Each registered class records the keyword arguments it was built with in
``self.net_config`` so a checkpoint can name it and rebuild it without the training code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

_NETS: dict[str, type[nn.Module]] = {}
T = TypeVar("T", bound=type[nn.Module])


def register_net(name: str) -> Callable[[T], T]:
    """Class decorator: register ``cls`` under ``name`` and set ``cls.registry_name``."""

    def wrap(cls: T) -> T:
        if name in _NETS and _NETS[name] is not cls:
            raise ValueError(f"net name {name!r} is already registered to {_NETS[name].__name__}")
        _NETS[name] = cls
        cls.registry_name = name  # type: ignore[attr-defined]
        return cls

    return wrap


def available_nets() -> list[str]:
    """Registered names, sorted."""
    return sorted(_NETS)


def create_net(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered net.

    Raises:
        ValueError: for an unknown name, listing the valid ones.
    """
    if name not in _NETS:
        raise ValueError(f"unknown net {name!r}; expected one of: {', '.join(available_nets())}")
    return _NETS[name](**kwargs)


def net_spec(net: nn.Module) -> dict[str, Any]:
    """``{"name", "kwargs"}`` for a registered net, plain JSON, as stored in checkpoints."""
    name = getattr(net, "registry_name", None)
    if name is None or name not in _NETS:
        raise ValueError(
            f"{type(net).__name__} is not a registered segapp net; register it with "
            "@register_net(name) so checkpoints can rebuild it"
        )
    return {"name": name, "kwargs": dict(getattr(net, "net_config", {}))}
