"""``segapp-export --checkpoint X.ckpt [Y.ckpt ...|CV_DIR] --format onnx|torchscript --out FILE``.

A self-describing model; several checkpoints (or a ``segapp-cv`` folder) become one ONNX graph
of the ensemble with the trust outputs (see docs/inference.md). ``--quantize int8 --calibration
DIR`` writes an int8 ONNX model instead, only where its masks stay within Dice 0.995 of fp32's.
"""

from __future__ import annotations

import argparse
import json
from typing import get_args

from segapp.cli.errors import run_console
from segapp.cli.parsing import console_parser
from segapp.inference.export import ExportFormat, Quantize


def build_parser() -> argparse.ArgumentParser:
    p = console_parser("segapp-export", __doc__)
    p.add_argument(
        "--checkpoint",
        required=True,
        nargs="+",
        help="checkpoint written by `segapp fit` (.ckpt); several, or a `segapp-cv --out` folder: one ensemble graph",
    )
    p.add_argument("--format", choices=get_args(ExportFormat), default="onnx", help="export format (default onnx)")
    p.add_argument("--out", required=True, help="file to write (.onnx or .pt); FILE.json is written beside it")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument(
        "--quantize",
        choices=get_args(Quantize),
        default=None,
        help="int8: ONNX Runtime static quantisation, written only if its masks hold (mean Dice vs fp32 >= 0.995)",
    )
    p.add_argument(
        "--calibration",
        metavar="DIR",
        default=None,
        help="with --quantize: training images (DIR/images if present); every 4th picked one checks, never calibrates",
    )
    p.add_argument(
        "--calibration-count",
        type=int,
        default=96,
        metavar="N",
        help="with --quantize: calibration images spread over DIR (default 96; N/3 more, >= 30, check it)",
    )
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    from segapp.inference.export import export_model  # torch, onnx: only when exporting

    out = run_console(
        "segapp-export",
        lambda: export_model(
            args.checkpoint,
            args.out,
            fmt=args.format,
            opset=args.opset,
            quantize=args.quantize,
            calibration=args.calibration,
            calibration_count=args.calibration_count,
        ),
        also=(ValueError,),
    )
    if args.quantize:
        from segapp.inference.quantize import summary

        print(summary(json.loads(out.with_name(out.name + ".json").read_text())["quantization"]))
    kind = f"{args.format} {args.quantize}" if args.quantize else args.format
    if args.format == "onnx":
        use = f"run it with `segapp-predict --model {out}`"
    else:  # segapp-predict runs ONNX or a checkpoint; a TorchScript file is for the user's own code
        use = f"load it with `torch.jit.load('{out}')` (segapp-predict runs ONNX: --format onnx)"
    print(f"wrote {out} and {out.name}.json ({kind}); {use}")


if __name__ == "__main__":
    main()
