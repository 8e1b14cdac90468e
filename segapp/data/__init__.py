"""Dataset layouts, checks, splits, transforms and the LightningDataModule.

``LesionDataModule`` is imported lazily so that the light parts (layouts, check) load without
Lightning, e.g. for ``segapp-data check``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from segapp.data.errors import DataError

if TYPE_CHECKING:
    from segapp.data.datamodule import LesionDataModule

__all__ = ["DataError", "LesionDataModule"]


def __getattr__(name: str) -> Any:
    if name == "LesionDataModule":
        from segapp.data.datamodule import LesionDataModule

        return LesionDataModule
    raise AttributeError(f"module 'segapp.data' has no attribute {name!r}")
