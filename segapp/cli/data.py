"""``segapp-data``: dataset tools (``synth`` generates the built-in synthetic lesion dataset)."""

from __future__ import annotations

import argparse
import sys

from segapp.data.synth import generate


def _synth(args: argparse.Namespace) -> int:
    out = generate(args.out, n=args.n, size=args.size, seed=args.seed)
    print(f"wrote {args.n} image/mask pairs ({args.size}x{args.size}, seed {args.seed}) to {out}/images and {out}/masks")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="segapp-data", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("synth", help="generate synthetic dermoscopy-like lesion images and masks")
    s.add_argument("--out", required=True, help="output folder (gets images/ and masks/)")
    s.add_argument("--n", type=int, default=200, help="number of pairs (default 200)")
    s.add_argument("--size", type=int, default=128, help="image side in pixels (default 128)")
    s.add_argument("--seed", type=int, default=0, help="seed; the same seed gives identical files")
    s.set_defaults(func=_synth)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    sys.exit(args.func(args))


if __name__ == "__main__":
    main()
