"""``segapp-export --checkpoint X.ckpt [Y.ckpt ...|CV_DIR] --format onnx|torchscript --out FILE``.

A self-describing model; several checkpoints (or a ``segapp-cv`` folder) become one ONNX graph
of the ensemble with the trust outputs (see docs/inference.md).
"""

from __future__ import annotations

import argparse
from typing import get_args

from segapp.cli.errors import run_console
from segapp.cli.parsing import console_parser
from segapp.inference.export import ExportFormat


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
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    from segapp.inference.export import export_model  # torch, onnx: only when exporting

    out = run_console(
        "segapp-export",
        lambda: export_model(args.checkpoint, args.out, fmt=args.format, opset=args.opset),
        also=(ValueError,),
    )
    print(f"wrote {out} and {out.name}.json ({args.format}); run it with `segapp-predict --model {out}`")


if __name__ == "__main__":
    main()
