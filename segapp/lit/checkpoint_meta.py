"""The ``ckpt["segapp"]`` block: everything inference needs, as plain JSON types."""

from __future__ import annotations

import platform
from typing import Any

import torch
from torch import nn

from segapp.io import PreprocessSpec
from segapp.nets import net_spec

SCHEMA_VERSION = 1


def build_meta(
    net: nn.Module,
    spec: PreprocessSpec | None,
    threshold: float,
    data_fingerprint: str | None,
    run_info: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Plain-JSON metadata (loadable with ``torch.load(weights_only=True)``).

    Keys: ``schema_version``, ``net`` (registry ``name`` and ``kwargs``), ``preprocess``
    (``size``, ``size_policy``, ``in_channels``, ``mean``, ``std``), ``threshold``,
    ``data_fingerprint``, ``versions``, and ``run`` (git commit, package versions, the full
    resolved config as YAML text) when the CLI provided it.
    """
    import segapp

    return {
        "schema_version": SCHEMA_VERSION,
        "net": net_spec(net),
        "preprocess": spec.to_dict() if spec is not None else None,
        "threshold": float(threshold),
        "data_fingerprint": data_fingerprint,
        "versions": {
            "segapp": segapp.__version__,
            "torch": str(torch.__version__),
            "python": platform.python_version(),
        },
        "run": dict(run_info or {}),
    }
