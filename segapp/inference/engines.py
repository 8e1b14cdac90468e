"""Two inference engines behind one interface: PyTorch (checkpoint) and ONNX Runtime (exported).

Both take preprocessed ``N x C x H x W`` float32 batches and return ``N x H x W`` float32
probabilities, and both tile large images with Gaussian blending. torch is imported only by the
torch engine, so the ONNX engine runs where torch is not installed.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, get_args

import numpy as np

from segapp.errors import check_choice
from segapp.inference.checkpoint import ONNX_META_KEY, CheckpointError
from segapp.inference.ensemble import load_members
from segapp.io import PreprocessSpec
from segapp.machine import cpu_has_amx_bf16, gpu_device_nodes

Precision = Literal["auto", "fp32", "bf16", "fp16"]  # the one list of choices (get_args)
Device = Literal["auto", "cpu", "cuda"]
EngineName = Literal["auto", "torch", "onnx"]


@dataclass
class EngineOutput:
    """One forward pass of K members: ``logits`` ``N x K x H x W`` and ``ood`` ``N x K`` (ratio to
    the member's validation threshold; None when the model has no training statistics)."""

    logits: np.ndarray
    ood: np.ndarray | None


class Engine(Protocol):
    """What the predictor needs from an engine."""

    spec: PreprocessSpec
    threshold: float
    meta: dict[str, Any]
    trust: dict[str, Any] | None  # the model's (or ensemble's) trust block, plain JSON
    members: int

    def run(self, batch: np.ndarray) -> EngineOutput:
        """``N x C x H x W`` float32 (``H x W = spec.size``, or a tile) -> per-member logits and OOD ratios."""

    def describe(self) -> dict[str, Any]:
        """Engine name, device, precision and library versions for ``run.json``."""


def check_engine_options(device: str, precision: str) -> None:
    """Refuse a device or precision outside :data:`Device` / :data:`Precision`, naming the close match.

    Raises:
        SettingError: (a ``ValueError``) for an unknown name.
    """
    check_choice("device", device, get_args(Device))
    check_choice("precision", precision, get_args(Precision))


def resolve_precision(precision: Precision, device_type: str) -> str:
    """``auto`` -> ``fp16`` on CUDA, ``bf16`` on CPUs with AMX-BF16, else ``fp32``.

    CPUs with AVX512-BF16 but no AMX get fp32: there ONNX Runtime fp32 (which ``--engine auto``
    then picks) was faster end to end than torch bf16, with the masks of the validation run
    (docs/benchmarks.md, "Inference, issue 18").

    Raises:
        SettingError: (a ``ValueError``) for an unknown precision name.
    """
    check_choice("precision", precision, get_args(Precision))
    if precision != "auto":
        return precision
    if device_type == "cuda":
        return "fp16"
    return "bf16" if cpu_has_amx_bf16() else "fp32"


class TorchEngine:
    """Member nets in eval mode (a :class:`~segapp.nets.trust.TrustNet`), run under
    ``inference_mode`` with channels_last and autocast.

    Args:
        net: One trained net, or a ``TrustNet`` of several (see :meth:`from_checkpoints`).
        spec: The members' preprocessing.
        threshold: The probability threshold of the model (or ensemble).
        meta: The (first) checkpoint's ``segapp`` block.
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
        precision: ``auto``, ``fp32``, ``bf16`` or ``fp16`` (autocast dtype).
        channels_last: Use the channels-last memory format (faster convolutions on CPU).
        trust: Plain-JSON review rules (temperature, thresholds), or None.
        stats: With a single ``net``: its OOD feature statistics (``trust["features"]``), or None.
    """

    def __init__(
        self,
        net: Any,
        spec: PreprocessSpec,
        threshold: float,
        meta: dict[str, Any],
        device: Device = "auto",
        precision: Precision = "auto",
        channels_last: bool = True,
        trust: dict[str, Any] | None = None,
        stats: dict[str, Any] | None = None,
    ) -> None:
        import torch

        from segapp.nets.trust import TrustNet

        check_engine_options(device, precision)
        if device == "cuda" and not torch.cuda.is_available():
            raise ValueError("--device cuda was asked for but torch sees no CUDA GPU; use --device cpu or auto")
        self.device = torch.device(
            "cuda" if device == "cuda" or (device == "auto" and torch.cuda.is_available()) else "cpu"
        )
        self.precision = resolve_precision(precision, self.device.type)
        self.channels_last = channels_last
        net = net if isinstance(net, TrustNet) else TrustNet([net], [stats])
        self.net = net.to(self.device).eval()
        if channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        self.spec, self.threshold, self.meta, self.trust = spec, threshold, meta, trust
        self.members = net.size
        self.has_ood = net.has_ood

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: Device = "auto", precision: Precision = "auto") -> TorchEngine:
        """One ``segapp fit`` checkpoint."""
        return cls.from_checkpoints([path], device=device, precision=precision)

    @classmethod
    def from_checkpoints(
        cls, paths: list[str | Path], device: Device = "auto", precision: Precision = "auto"
    ) -> TorchEngine:
        """One checkpoint, several (an ensemble), or a ``segapp-cv`` folder (:mod:`segapp.inference.ensemble`)."""
        from segapp.nets.trust import TrustNet

        m = load_members(paths)
        net = TrustNet(m.nets, m.stats, m.inputs)
        engine = cls(net, m.spec, m.threshold, m.metas[0], device=device, precision=precision, trust=m.trust)
        engine.member_files = [str(p) for p in m.paths]
        engine.source = m.source
        return engine

    def _autocast(self) -> Any:
        import torch

        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        return torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None)

    def run(self, batch: np.ndarray) -> EngineOutput:
        import torch

        with torch.inference_mode(), self._autocast():
            x = torch.from_numpy(np.ascontiguousarray(batch, np.float32)).to(self.device)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            logits, ood, *_ = self.net(x)
            return EngineOutput(logits.float().cpu().numpy(), ood.float().cpu().numpy() if self.has_ood else None)

    def describe(self) -> dict[str, Any]:
        import torch

        return {
            "engine": "torch",
            "device": str(self.device),
            "precision": self.precision,
            "channels_last": self.channels_last,
            "members": self.members,
            "torch": str(torch.__version__),
            "threads": torch.get_num_threads(),
            **getattr(self, "selection", {}),
        }


class OnnxEngine:
    """An exported model (``segapp-export --format onnx``) run by ONNX Runtime, without torch.

    Preprocessing, threshold, trust rules and which output is which come from the model's
    ``segapp`` metadata property (or the ``FILE.json`` sidecar when the property is missing).
    Models exported before trust signals (one ``logits`` output) still run, without OOD scores.

    Args:
        path: The ``.onnx`` file.
        device: ``auto``/``cuda`` use the CUDA provider when ONNX Runtime has it, else CPU.
        precision: Only ``fp32`` runs here; another explicit choice warns and runs fp32 (an int8
            export runs int8 and says so: ``precision`` is ``int8``).
        threads: Intra-op threads (``None``: ONNX Runtime's default, one per core).
        spin: Let idle intra-op threads spin between operators (faster alone, slower beside the
            writer thread of :func:`~segapp.inference.folder.predict_folder`; docs/benchmarks.md).
    """

    def __init__(
        self,
        path: str | Path,
        device: Device = "auto",
        precision: Precision = "auto",
        threads: int | None = None,
        spin: bool = False,
    ) -> None:
        import onnxruntime as ort

        check_engine_options(device, precision)
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"model {path} not found; expected a .onnx file written by `segapp-export`")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        # Idle threads sleep instead of spinning: spinning won 8-16 % of forward time alone, but
        # stole the core from the writer thread of a folder run, which made whole runs 1.15-1.3x slower.
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        available = ort.get_available_providers()
        providers = ["CPUExecutionProvider"]
        if device in ("auto", "cuda") and "CUDAExecutionProvider" in available:
            providers.insert(0, "CUDAExecutionProvider")
        elif device == "cuda":
            raise ValueError("--device cuda was asked for but ONNX Runtime has no CUDA provider; use --device cpu")
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as e:  # ORT raises its own Fail/InvalidGraph types
            raise CheckpointError(f"cannot load {path} with ONNX Runtime: {e}") from e
        if precision in ("bf16", "fp16"):
            warnings.warn(f"the ONNX engine runs fp32; --precision {precision} is ignored", stacklevel=2)
        self.meta = read_onnx_meta(path, self.session)
        self.quantization = self.meta.get("quantization")  # an int8 export's calibration and check
        self.precision = "int8" if self.quantization else "fp32"
        self.spec = PreprocessSpec.from_dict(self.meta["preprocess"])
        self.threshold = float(self.meta.get("threshold", 0.5))
        self.trust = self.meta.get("trust")
        self.input_name = self.session.get_inputs()[0].name
        names = [o.name for o in self.session.get_outputs()]
        self.has_ood = "ood" in names and bool(self.meta.get("has_ood"))
        self.output_names = ["logits", "ood"] if self.has_ood else [names[0]]
        self.members = int(self.meta.get("members", 1))
        self.providers = self.session.get_providers()

    def run(self, batch: np.ndarray) -> EngineOutput:
        outs = self.session.run(self.output_names, {self.input_name: np.ascontiguousarray(batch, np.float32)})
        logits = outs[0]
        if logits.ndim == 4 and "members" not in self.meta:  # a pre-trust export: N x 1 x H x W logits
            logits = logits[:, :1]
        return EngineOutput(np.asarray(logits, np.float32), outs[1] if self.has_ood else None)

    def describe(self) -> dict[str, Any]:
        import onnxruntime as ort

        return {
            "engine": "onnxruntime",
            "providers": self.providers,
            "precision": self.precision,
            "members": self.members,
            "onnxruntime": ort.__version__,
            **({"quantization": self.quantization} if self.quantization else {}),
            **getattr(self, "selection", {}),
        }


def read_onnx_meta(path: str | Path, session: Any = None) -> dict[str, Any]:
    """The ``segapp`` block of an exported ONNX model (metadata property, else ``FILE.json``).

    Raises:
        CheckpointError: when neither holds a block with ``preprocess``.
    """
    path = Path(path)
    text = None
    if session is not None:
        text = session.get_modelmeta().custom_metadata_map.get(ONNX_META_KEY)
    sidecar = path.with_name(path.name + ".json")
    if text is None and sidecar.is_file():
        text = sidecar.read_text()
    meta = json.loads(text) if text else None
    if not meta or not meta.get("preprocess"):
        raise CheckpointError(
            f"{path} carries no segapp metadata (ONNX metadata property {ONNX_META_KEY!r} or {sidecar.name}); "
            "export it with `segapp-export --format onnx`"
        )
    return meta


def _device_type(device: str) -> str:
    if device == "cuda":
        return "cuda"
    if device == "auto":
        if not gpu_device_nodes():
            return "cpu"  # no GPU device node: no need to import torch (1.5 s) to ask
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return "cpu"


def onnx_unavailable(device: str, precision: str) -> str | None:
    """Why ONNX Runtime cannot run this checkpoint the way torch would (None when it can)."""
    dtype = _device_type(device)
    resolved = resolve_precision(precision, dtype)  # type: ignore[arg-type]
    if resolved != "fp32":
        return f"precision {resolved} (ONNX Runtime runs fp32 here; pass --precision fp32 for ONNX)"
    try:
        import onnxruntime as ort
    except ImportError:
        return "onnxruntime is not installed"
    if dtype == "cuda" and "CUDAExecutionProvider" not in ort.get_available_providers():
        return "ONNX Runtime has no CUDA provider"
    return None


def _onnx_from_checkpoints(paths: list[str | Path], device: Device) -> OnnxEngine:
    """ONNX Runtime over the cached export of ``paths`` (exported once; see :mod:`segapp.inference.onnx_cache`)."""
    from segapp.inference.ensemble import resolve
    from segapp.inference.onnx_cache import cached_onnx

    path, how = cached_onnx(paths)
    engine = OnnxEngine(path, device=device, precision="fp32")
    files, record = resolve(paths)
    engine.member_files = [str(p) for p in files]
    engine.source = "cv folder" if record is not None else ("checkpoint" if len(files) == 1 else "checkpoints")
    engine.selection = {"export": how, "export_path": str(path)}
    return engine


def create_engine(
    checkpoint: str | Path | list[str | Path] | None = None,
    model: str | Path | None = None,
    device: Device = "auto",
    precision: Precision = "auto",
    engine: EngineName = "torch",
    notes: Any = None,
) -> Engine:
    """The one factory: an engine for checkpoint(s) (one, several, or a ``segapp-cv`` folder) or
    an ONNX Runtime engine for ``model``.

    ``engine`` (checkpoints only): ``torch``; ``onnx`` (the checkpoint exported once to the user
    cache, run by ONNX Runtime; fp32 only); ``auto`` (ONNX where it runs the same precision and
    device as torch would, else torch; a fallback that is not the plan, no onnxruntime, no CUDA
    provider, a net that does not export, is a one-line note through ``notes``; the reason is
    in ``describe()`` either way).

    Raises:
        ValueError: unless exactly one of ``checkpoint`` and ``model`` is given, for a
            ``model`` that is not ``.onnx``, an unknown device, precision or engine, or
            ``engine="onnx"`` where ONNX Runtime cannot run it.
        CheckpointError: unreadable members, or members that do not fit together.
    """
    check_choice("engine", engine, get_args(EngineName))
    if (checkpoint is None or checkpoint == []) == (model is None):
        raise ValueError("give exactly one of --checkpoint FILE.ckpt [...] (torch) or --model FILE.onnx (ONNX Runtime)")
    if model is not None:
        if Path(model).suffix.lower() != ".onnx":
            raise ValueError(f"--model expects an .onnx file from `segapp-export`, got {model}")
        return OnnxEngine(model, device=device, precision=precision)
    paths = list(checkpoint) if isinstance(checkpoint, list | tuple) else [checkpoint]
    check_engine_options(device, precision)
    if engine != "torch":
        reason = onnx_unavailable(device, precision)
        if reason is not None and engine == "onnx":
            raise ValueError(f"--engine onnx cannot run here: {reason}; fix: --engine torch or auto")
        if reason is None:
            try:
                return _onnx_from_checkpoints(paths, device)
            except CheckpointError:
                raise
            except Exception as e:  # the net does not export, or ONNX Runtime refuses the graph
                if engine == "onnx":
                    raise ValueError(f"--engine onnx: the checkpoint does not export ({e}); fix: --engine torch") from e
                reason = f"the net does not export to ONNX ({type(e).__name__}: {e})"
        if notes is not None and not reason.startswith("precision"):  # bf16/fp16 keeping torch is the plan
            notes(f"engine auto: torch, because {reason}")
    torch_engine = TorchEngine.from_checkpoints(paths, device=device, precision=precision)
    if engine == "auto":
        torch_engine.selection = {"auto": "torch", "auto_reason": reason}
    return torch_engine
