"""``segapp-predict (--checkpoint FILE.ckpt | --model FILE.onnx) --input DIR --output DIR``.

Neither ``--checkpoint`` nor ``--model``: the ONNX model named by ``$SEGAPP_MODEL`` (the container's).

Masks at original resolution for every image, DICOM and NIfTI file under a folder, plus
``predictions.csv`` and ``run.json``. Exit codes: 0 all inputs ok; 1 some inputs failed;
2 usage or model error, or the output folder holds another run or is locked by a running one;
3 no input could be read; 4 the output folder cannot be written (a file, not writable, disk
full); 130 stopped by Ctrl-C; 143 stopped by SIGTERM. See docs/inference.md.

Sharded runs: ``--shard I/N`` (0-based) or ``--shard auto`` (SLURM, Kubernetes Indexed Job or
AWS Batch array index) predicts every N-th input into the shared --output; ``segapp-merge
OUTPUT`` then writes the one predictions.csv, run.json and review.html (docs/inference.md,
"Sharded runs").
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import get_args

from segapp.cli.errors import fail
from segapp.cli.parsing import console_parser
from segapp.inference.checkpoint import CheckpointError, file_sha256
from segapp.inference.engines import Device, EngineName, Precision
from segapp.inference.folder import EXIT_OUTPUT, EXIT_USAGE, FolderOptions, FolderSummary
from segapp.inference.interrupt import exit_code_for, sigterm_as_interrupt
from segapp.inference.lock import LockError
from segapp.inference.outputs import OutputError
from segapp.inference.predictor import Mode, Tta
from segapp.inference.shards import COUNT_ENV, ShardError, parse_shard
from segapp.inference.sizing import choose, parse_count
from segapp.io.limits import DEFAULT_MAX_FILE_PIXELS, DEFAULT_MAX_PIXELS


def _version() -> str:
    from segapp import __version__

    return __version__


HELP = {
    "mode": "resize: whole image to the training size (default); tile: Gaussian-blended windows",
    "precision": "auto: bf16 on CPUs with AMX-BF16, fp16 on CUDA, else fp32 (ONNX Runtime with --engine auto)",
}


def build_parser() -> argparse.ArgumentParser:
    p = console_parser("segapp-predict", __doc__)
    src = p.add_mutually_exclusive_group()  # neither: $SEGAPP_MODEL (the container's model), see main
    p.add_argument("--version", action="version", version=f"segapp-predict {_version()}")
    src.add_argument(
        "--checkpoint",
        nargs="+",
        help="checkpoint written by `segapp fit` (.ckpt; torch engine); several, or a `segapp-cv --out` folder, "
        "predict with their ensemble (mean probability)",
    )
    src.add_argument(
        "--model",
        help="model written by `segapp-export --format onnx` (ONNX Runtime; no torch needed); "
        "default: $SEGAPP_MODEL when neither --checkpoint nor --model is given",
    )
    p.add_argument("--input", required=True, help="folder of images/scans, walked recursively")
    p.add_argument(
        "--output", required=True, help="folder for outputs, predictions.csv and run.json (not inside --input)"
    )
    p.add_argument("--threshold", type=float, default=None, help="probability threshold (default: the model's)")
    p.add_argument(
        "--tta",
        choices=get_args(Tta),
        default=None,
        help="average over flips (default: the model's choice on its validation split, else none)",
    )
    p.add_argument("--mode", choices=get_args(Mode), default="resize", help=HELP["mode"])
    p.add_argument("--overlap", type=float, default=0.25, help="window overlap for --mode tile (default 0.25)")
    p.add_argument(
        "--keep-largest",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="keep only the largest connected component (default: the model's choice, else no)",
    )
    p.add_argument("--min-size", type=int, default=0, help="remove components smaller than this many pixels")
    p.add_argument(
        "--batch-size",
        type=_count("--batch-size", 1),
        default="auto",
        help="images (or tiles) per forward pass; auto (default): from the engine (run.json says which)",
    )
    p.add_argument(
        "--workers",
        type=_count("--workers", 0),
        default="auto",
        help="decoding worker processes (torch DataLoader); auto (default): from the cores and the engine",
    )
    p.add_argument("--device", choices=get_args(Device), default="auto", help="default auto")
    p.add_argument(
        "--engine",
        choices=get_args(EngineName),
        default="auto",
        help="with --checkpoint: auto (default) runs ONNX Runtime over a cached export where it runs the same "
        "precision and device as torch, else torch; onnx; torch",
    )
    p.add_argument("--precision", choices=get_args(Precision), default="auto", help=HELP["precision"])
    p.add_argument(
        "--save-probs",
        nargs="?",
        const="png",
        choices=("png", "npy"),
        default=None,
        help="also write probabilities (16-bit PNG, or float32 .npy)",
    )
    p.add_argument("--overlay", action="store_true", help="also write <name>.overlay.png (contour and tint)")
    p.add_argument(
        "--dicom-seg",
        action="store_true",
        help="also write <name>.seg.dcm for every DICOM input: a DICOM Segmentation referencing the source "
        "(BINARY; FRACTIONAL with --save-probs); a source lacking what a SEG must copy gets a reason instead",
    )
    p.add_argument(
        "--save-uncertainty",
        action="store_true",
        help="also write <name>.uncertainty.png: per-pixel entropy of the calibrated probability (0-255 = 0-1 bit)",
    )
    p.add_argument(
        "--no-review",
        action="store_true",
        help="no review.html and no thumbnails (review/thumbs/); the CSV keeps the trust columns",
    )
    p.add_argument("--review-cards", type=int, default=300, help="cards on review.html, riskiest first (default 300)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="skip inputs a previous run into --output finished (its model and options must match)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a previous run with other options in --output (its listed outputs are deleted)",
    )
    p.add_argument(
        "--break-lock",
        action="store_true",
        help="take over the output folder's lock even if its holder cannot be proven gone",
    )
    p.add_argument("--nifti-axis", type=int, default=2, choices=(0, 1, 2), help="slice axis for 3D NIfTI (default 2)")
    p.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        help="refuse (error row) a 2D frame or slice over N pixels, read from the header "
        "(default %(default)s, where Pillow refuses a decompression bomb)",
    )
    p.add_argument(
        "--max-file-pixels",
        type=int,
        default=DEFAULT_MAX_FILE_PIXELS,
        help="refuse a multi-frame DICOM / 3D NIfTI over N pixels in all frames (default %(default)s = 512x512x2048)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress line on stderr")
    _add_shard_flags(p)
    return p


def _add_shard_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--shard",
        metavar="I/N|auto",
        help="predict only shard I of N (0-based: every input whose position in the sorted input list is I mod N) "
        "into the shared --output; auto: from SLURM_ARRAY_TASK_ID/_COUNT, JOB_COMPLETION_INDEX (Kubernetes) "
        "or AWS_BATCH_JOB_ARRAY_INDEX; combine the shards with segapp-merge OUTPUT",
    )
    p.add_argument(
        "--shard-count",
        type=int,
        metavar="N",
        help=f"the number of shards for --shard auto when the scheduler does not give it (or set {COUNT_ENV})",
    )


def _count(name: str, minimum: int):
    """argparse ``type`` for ``auto`` or an integer >= ``minimum``, with segapp's message."""

    def parse(text: str) -> int | str:
        try:
            return parse_count(name, text, minimum)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    return parse


def _fail(message: str, code: int = EXIT_USAGE) -> None:
    fail("segapp-predict", message, code)


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if not args.checkpoint and not args.model:
        args.model = _model_from_env()
    if args.min_size < 0 or args.review_cards < 0:
        _fail("--min-size and --review-cards must be >= 0")
    if args.max_pixels < 1 or args.max_file_pixels < 1:
        _fail(f"--max-pixels and --max-file-pixels must be >= 1, got {args.max_pixels} and {args.max_file_pixels}")
    if args.resume and args.overwrite:
        _fail("--resume continues the run in --output and --overwrite replaces it; pass one of them")
    try:
        args.shard = parse_shard(args.shard, args.shard_count)
    except ShardError as e:
        _fail(str(e))
    model_path = args.checkpoint[0] if args.checkpoint else args.model
    try:
        with sigterm_as_interrupt():
            summary = _run(args, model_path)
    except (CheckpointError, ValueError, LockError) as e:  # RunMismatchError is a ValueError
        _fail(str(e))
    except OutputError as e:
        _fail(str(e), EXIT_OUTPUT)
    except KeyboardInterrupt as e:  # before or after the folder loop (inside it, the run stops cleanly)
        _fail("stopped by " + ("SIGTERM" if exit_code_for(e) == 143 else "Ctrl-C"), exit_code_for(e))
    print(f"segapp-predict: {_closing_line(args, summary)}")
    sys.exit(summary.exit_code)


def _model_from_env() -> str:
    """``$SEGAPP_MODEL``: the container sets it, and ``docker run -e SEGAPP_MODEL=...`` must pick the
    model it names (a hard-coded ``--model`` in the image's CMD ran the baked-in one instead)."""
    env = os.environ.get("SEGAPP_MODEL", "").strip()
    if not env:
        _fail("expected --checkpoint or --model (or the SEGAPP_MODEL environment variable), got none of them")
    return env


def _closing_line(args: argparse.Namespace, summary: FolderSummary) -> str:
    """The summary line; a shard names its own CSV and run.json and the merge step."""
    if args.shard is None:
        return f"{summary.line()}; outputs, predictions.csv and run.json in {args.output}"
    from segapp.inference.shards import RunFiles

    files = RunFiles.for_shard(args.shard)
    return (
        f"shard {args.shard.label}: {summary.line()}; outputs, {files.csv} and {files.run_json} in {args.output}; "
        f"when every shard has finished: segapp-merge {args.output}"
    )


# command-line options passed through by name (argparse dest == keyword)
PREDICTOR_OPTIONS = ("threshold", "tta", "mode", "keep_largest", "min_size", "overlap", "batch_size")
FOLDER_OPTIONS = ("save_probs", "overlay", "resume", "workers", "nifti_axis", "max_pixels", "max_file_pixels")
FOLDER_OPTIONS += ("overwrite", "break_lock", "save_uncertainty", "review_cards", "dicom_seg")


def _options(args: argparse.Namespace, names: tuple[str, ...]) -> dict:
    return {name: getattr(args, name) for name in names}


def _note(line: str) -> None:
    print(f"segapp-predict: note: {line}", file=sys.stderr, flush=True)


def _model_choice_line(predictor) -> str:
    """Which options the model's choice changed from the defaults, and how to override them ("" for none)."""
    changed = [k for k in predictor.from_model if getattr(predictor, k) not in ("none", False)]
    got = ", ".join("--keep-largest" if k == "keep_largest" else f"--tta {predictor.tta}" for k in changed)
    if not got:
        return ""
    undo = " / ".join("--no-keep-largest" if k == "keep_largest" else "--tta none" for k in changed)
    return f"{got}: the model's choice on its validation split (checkpoint 'inference' block); pass {undo} to override"


def _model_sha256(engine, model_path: str) -> str:
    """SHA-256 of the model file; of the members' hashes, in order, for a checkpoint ensemble."""
    import hashlib

    files = getattr(engine, "member_files", None)
    if not files or (len(files) == 1 and files[0] == str(model_path)):
        return file_sha256(model_path)
    if len(files) == 1:
        return file_sha256(files[0])
    return "ensemble:" + hashlib.sha256(" ".join(file_sha256(f) for f in files).encode()).hexdigest()


def _run(args: argparse.Namespace, model_path: str) -> FolderSummary:
    """Build the engine and predictor from ``args`` and run the folder; returns the summary."""
    from segapp.inference.engines import create_engine
    from segapp.inference.folder import predict_folder
    from segapp.inference.predictor import Predictor

    engine = create_engine(
        checkpoint=args.checkpoint,
        model=args.model,
        device=args.device,
        precision=args.precision,
        engine=args.engine,
        notes=_note,
    )
    sizing = choose(engine.describe(), args.workers, args.batch_size)
    args.workers, args.batch_size = sizing.workers, sizing.batch_size
    predictor = Predictor(engine, **_options(args, PREDICTOR_OPTIONS))
    if line := _model_choice_line(predictor):
        _note(line)
    progress = not args.no_progress and sys.stderr.isatty()
    options = FolderOptions(
        progress=progress, review=not args.no_review, shard=args.shard, **_options(args, FOLDER_OPTIONS)
    )
    info = {
        "model_file": str(model_path),
        "model_sha256": _model_sha256(engine, model_path),
        "argv": sys.argv[1:],
        "sizing": sizing.to_dict(),
    }
    if engine.members > 1:
        info["ensemble"] = getattr(engine, "member_files", None)
    return predict_folder(predictor, args.input, args.output, options, info)


if __name__ == "__main__":
    main()
