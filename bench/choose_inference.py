"""Run the fit-end inference choice (segapp.inference.choice) on a checkpoint trained before it existed.

The same function ``segapp fit`` runs at its end (:func:`segapp.lit.choose_inference.choose_for_checkpoint`),
on the validation split that the run's config rebuilds (``data:`` section: same root, seed and
fractions give the same split). Prints one line; ``--out`` writes the block as JSON, ``--write``
stores it in the checkpoint.

    python bench/choose_inference.py --ckpt RUN/checkpoints/best.ckpt --config RUN/plan.yaml [--write]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import yaml

from segapp.data import LesionDataModule
from segapp.inference.checkpoint import add_block
from segapp.inference.choice import CHOICE_KEY, MAX_IMAGES, describe_choice
from segapp.lit.choose_inference import choose_for_checkpoint
from segapp.lit.preview import spread


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", type=Path, required=True)
    ap.add_argument("--config", type=Path, required=True, help="the run's config (its data: section is used)")
    ap.add_argument("--write", action="store_true", help="store the block in the checkpoint")
    ap.add_argument("--out", type=Path, help="also write the block to this JSON file")
    args = ap.parse_args()
    data = (yaml.safe_load(args.config.read_text()) or {}).get("data") or {}
    data.pop("train_size_schedule", None)
    dm = LesionDataModule(**{**data, "check": False})
    dm.setup("fit")
    t0 = time.perf_counter()
    block = choose_for_checkpoint(args.ckpt, spread(dm.splits["val"], MAX_IMAGES), dm.mask_rule)
    block["seconds"] = round(time.perf_counter() - t0, 1)
    if args.write:
        add_block(args.ckpt, CHOICE_KEY, block)
    if args.out:
        args.out.write_text(json.dumps(block, indent=1) + "\n")
    print(describe_choice(block), f"({block['seconds']} s)")


if __name__ == "__main__":
    main()
