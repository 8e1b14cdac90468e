"""ONNX exports of checkpoints, made once and kept in the user cache folder for ``--engine onnx|auto``.

An entry is keyed by the members' SHA-256, the export options, the segapp/torch versions and a
digest of the code that builds the graph (``<cache>/onnx/<key>.onnx``). It is trusted only after
it loads and its embedded metadata names exactly those members' hashes; a corrupt, partial or
stale entry is exported again, never used.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from segapp.inference.checkpoint import file_sha256
from segapp.inference.ensemble import resolve
from segapp.io.writers import cache_dir

OPSET = 17


def member_hashes(paths: list[str | Path]) -> tuple[list[str], dict | None]:
    """SHA-256 of each member file (a cv folder's members, in order), and the cv folder's record."""
    files, record = resolve(paths)
    return [file_sha256(p) for p in files], record


def graph_code_digest() -> str:
    """SHA-256 of the source that decides an exported graph and its metadata (the nets, how a
    checkpoint rebuilds them, the export, this cache): the version string stays 0.1.0 across
    commits, so a changed net (say, a decoder's padding) with an unchanged checkpoint reused the
    old cached graph."""
    import segapp

    root = Path(segapp.__file__).parent
    graph = ("export.py", "ensemble.py", "checkpoint.py", "onnx_cache.py", "quantize.py")
    files = sorted((root / "nets").glob("*.py")) + [root / "inference" / n for n in graph]
    h = hashlib.sha256()
    for f in (f for f in files if f.is_file()):
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def cache_key(hashes: list[str], record: dict | None, opset: int = OPSET) -> str:
    """What decides the export: members, the cv record's threshold and rules (else the members' own),
    opset, segapp and torch versions, the graph's code (:func:`graph_code_digest`)."""
    from importlib.metadata import version

    import segapp

    settings = None if record is None else {"threshold": record.get("threshold"), "trust": record.get("trust")}
    payload = {
        "members": hashes,
        "ensemble": settings,
        "opset": opset,
        "segapp": segapp.__version__,
        "code": graph_code_digest(),
        "torch": version("torch"),  # not `import torch`: a cached run need not pay its 1.5 s import
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _entry_ok(path: Path, hashes: list[str]) -> bool:
    """The entry loads, passes ONNX's checker and was exported from exactly these members."""
    try:
        import onnx

        model = onnx.load(str(path))
        onnx.checker.check_model(model)
        meta = json.loads({p.key: p.value for p in model.metadata_props}["segapp"])
    except Exception:  # any damage means: export again
        return False
    return [b.get("source_sha256") for b in meta.get("member_blocks", [])] == hashes


def cached_onnx(paths: list[str | Path], opset: int = OPSET) -> tuple[Path, str]:
    """The cached ONNX export of ``paths`` (exported now when missing or not trustworthy).

    Returns:
        ``(path, "cached" | "exported")``.

    Raises:
        CheckpointError: unreadable members; export errors propagate (the caller falls back).
    """
    from segapp.inference.export import export_model

    hashes, record = member_hashes(paths)
    path = cache_dir("onnx") / f"{cache_key(hashes, record, opset)}.onnx"
    if path.is_file() and _entry_ok(path, hashes):
        return path, "cached"
    path.parent.mkdir(parents=True, exist_ok=True)
    export_model(list(paths), path, fmt="onnx", opset=opset)
    return path, "exported"
