"""``segapp-predict --checkpoint FILE.ckpt --input DIR --output DIR``: masks for a folder of images."""

from __future__ import annotations

import argparse
import sys
import time

from segapp.inference import CheckpointError, Predictor


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="segapp-predict", description=__doc__)
    p.add_argument("--checkpoint", required=True, help="checkpoint written by `segapp fit` (.ckpt)")
    p.add_argument("--input", required=True, help="folder of images, walked recursively")
    p.add_argument("--output", required=True, help="folder for masks and predictions.csv (not inside --input)")
    p.add_argument("--threshold", type=float, default=None, help="probability threshold (default: the checkpoint's)")
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        predictor = Predictor.from_checkpoint(args.checkpoint, threshold=args.threshold)
        t0 = time.perf_counter()
        counts = predictor.predict_folder(args.input, args.output)
    except (CheckpointError, ValueError) as e:
        print(f"segapp-predict: error: {e}", file=sys.stderr)
        sys.exit(2)
    n = counts["ok"] + counts["error"]
    rate = n / max(time.perf_counter() - t0, 1e-9)
    print(f"predicted {counts['ok']} ok / {counts['error']} failed ({rate:.1f} images/s); masks and predictions.csv in {args.output}")
    sys.exit(0 if counts["error"] == 0 else 1)


if __name__ == "__main__":
    main()
