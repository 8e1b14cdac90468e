"""The net registry: one factory, ``create_net(name, **kwargs)``, over an explicit table.

:func:`register_net` also records, on every instance, the keyword arguments it was built with
(bound to the constructor's signature, defaults applied) in ``self.net_config``, as SMP's
``hub_mixin`` does, so a checkpoint can name the net and rebuild it without the training code
and no argument can be forgotten. A class can pin some of them for the rebuild with
``rebuild_overrides`` (``SmpUnet`` pins ``load_weights=False``: the checkpoint's state dict
already holds the trained weights, so a rebuild never reaches for the hub or a weights file).
"""

from __future__ import annotations

import copy
import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

_NETS: dict[str, type[nn.Module]] = {}
T = TypeVar("T", bound=type[nn.Module])
_UNBINDABLE = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.VAR_POSITIONAL)


def _check_signature(name: str, cls: type[nn.Module]) -> inspect.Signature:
    """The constructor's signature, refused when a checkpoint could not replay it as keywords."""
    sig = inspect.signature(cls.__init__)
    bad = [p.name for p in list(sig.parameters.values())[1:] if p.kind in _UNBINDABLE]
    if bad:
        raise TypeError(
            f"net {name!r}: {cls.__name__}.__init__ takes positional-only or *args parameters {bad}; "
            "expected keyword-compatible parameters so a checkpoint can rebuild it with create_net(name, **kwargs)"
        )
    unknown = set(getattr(cls, "rebuild_overrides", {})) - set(sig.parameters)
    if unknown and not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values()):
        raise TypeError(f"net {name!r}: rebuild_overrides names {sorted(unknown)}, which {cls.__name__}.__init__ lacks")
    return sig


def _record_init_args(cls: type[nn.Module], sig: inspect.Signature) -> None:
    """Wrap ``cls.__init__`` so each instance stores its bound call arguments in ``net_config``."""
    init = cls.__init__

    @functools.wraps(init)
    def __init__(self: nn.Module, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        if type(self) is not cls:  # a registered subclass records its own call; net_spec refuses others
            return
        bound = sig.bind(self, *args, **kwargs)
        bound.apply_defaults()
        config: dict[str, Any] = {}
        for pname, value in list(bound.arguments.items())[1:]:
            if sig.parameters[pname].kind is inspect.Parameter.VAR_KEYWORD:
                config.update(value)
            else:
                config[pname] = value
        self.net_config = copy.deepcopy({**config, **getattr(cls, "rebuild_overrides", {})})

    cls.__init__ = __init__  # type: ignore[method-assign]


def register_net(name: str) -> Callable[[T], T]:
    """Class decorator: register ``cls`` under ``name``, set ``cls.registry_name`` and record init args.

    Raises:
        ValueError: when ``name`` is already taken by another class.
        TypeError: when the constructor cannot be replayed from keyword arguments.
    """

    def wrap(cls: T) -> T:
        if name in _NETS and _NETS[name] is not cls:
            raise ValueError(f"net name {name!r} is already registered to {_NETS[name].__name__}")
        if name not in _NETS:
            _record_init_args(cls, _check_signature(name, cls))
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
    """``{"name", "kwargs"}`` for a registered net, as stored in checkpoints (``ckpt["segapp"]["net"]``)."""
    name = getattr(net, "registry_name", None)
    if name is None or _NETS.get(name) is not type(net):  # an unregistered subclass would rebuild its parent
        raise ValueError(
            f"{type(net).__name__} is not a registered segapp net; register it with "
            "@register_net(name) so checkpoints can rebuild it"
        )
    return {"name": name, "kwargs": dict(getattr(net, "net_config", {}))}
