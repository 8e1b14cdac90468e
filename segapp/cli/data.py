"""``segapp-data``: dataset tools.

``synth`` generates the built-in synthetic lesion dataset (``--kind``: dermoscopy-like, the
default; dermoscopy-like with large low-contrast lesions; grey ultrasound-like with small
lesions); ``check`` runs the pre-flight check on a dataset folder (pairs, unpaired and
unreadable files, sizes, mask values and the mask value rule decided from them, masks that do
not fit it, empty masks, duplicates) and prints a report, or one JSON object with ``--json``.
Exit code 0 when the data can be trained on, 1 when the check found errors (or warnings with
``--strict``), 2 when the folder cannot be read as a dataset at all.
"""

from __future__ import annotations

import argparse
import json
import sys

from segapp.cli.errors import run_console
from segapp.cli.parsing import console_parser
from segapp.data.synth import KINDS, generate


def _synth(args: argparse.Namespace) -> int:
    out = generate(args.out, n=args.n, size=args.size, seed=args.seed, kind=args.kind)
    print(
        f"wrote {args.n} {args.kind} image/mask pairs ({args.size}x{args.size}, seed {args.seed}) "
        f"to {out}/images and {out}/masks"
    )
    return 0


def _check(args: argparse.Namespace) -> int:
    from segapp.data.check import check_dataset, format_report
    from segapp.data.layouts import discover
    from segapp.data.splits import data_fingerprint

    disc = discover(
        args.path, args.layout, mask_suffix=args.mask_suffix, mask_dir=args.mask_dir, csv_name=args.csv_name
    )
    rep = check_dataset(
        disc,
        args.threshold,
        data_fingerprint(disc),
        use_cache=not args.no_cache,
        foreground_labels=args.foreground_labels,
    )
    print(json.dumps(rep.to_dict()) if args.json else format_report(rep))
    return 1 if rep.errors or (args.strict and rep.warnings) else 0


def build_parser() -> argparse.ArgumentParser:
    parser = console_parser("segapp-data", __doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("synth", help="generate synthetic lesion images and masks (dermoscopy- or ultrasound-like)")
    s.add_argument("--out", required=True, help="output folder (gets images/ and masks/)")
    s.add_argument("--n", type=int, default=200, help="number of pairs (default 200)")
    s.add_argument("--size", type=int, default=128, help="image side in pixels (default 128)")
    s.add_argument("--seed", type=int, default=0, help="seed; the same seed gives identical files")
    s.add_argument(
        "--kind",
        default="dermoscopy",
        choices=KINDS,
        help="dermoscopy (default: varied lesions, 10 %% empty), dermoscopy_large (large low-contrast lesions, "
        "20-60 %% of the frame), ultrasound (grey, speckle, small dark lesions, median ~1.5 %% of the frame)",
    )
    s.set_defaults(func=_synth)
    c = sub.add_parser("check", help="pre-flight check of a dataset folder or CSV manifest")
    c.add_argument("path", help="dataset folder (or CSV manifest)")
    c.add_argument(
        "--layout",
        default="auto",
        choices=["auto", "isic2018", "paired", "suffix", "csv"],
        help="pairing rule (default: detect)",
    )
    c.add_argument(
        "--mask-suffix", default="_mask", help="suffix layout: mask stem = image stem + this (default _mask)"
    )
    c.add_argument("--mask-dir", default=None, help="suffix layout: folder of the masks, relative to PATH")
    c.add_argument("--csv-name", default=None, help="csv layout: manifest file name inside PATH")
    c.add_argument(
        "--threshold",
        type=float,
        default=127,
        help="threshold for grey (0-255) masks, as data.mask_threshold (default 127)",
    )
    c.add_argument(
        "--foreground-labels",
        type=int,
        nargs="+",
        default=None,
        metavar="LABEL",
        help="label-map masks: the labels that are lesion, as data.foreground_labels (default: any non-zero)",
    )
    c.add_argument("--json", action="store_true", help="print one JSON object instead of the report")
    c.add_argument("--strict", action="store_true", help="exit 1 on warnings too")
    c.add_argument("--no-cache", action="store_true", help="re-read every file instead of using the cached result")
    c.set_defaults(func=_check)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    sys.exit(run_console("segapp-data", lambda: args.func(args), also=(ValueError,)))


if __name__ == "__main__":
    main()
