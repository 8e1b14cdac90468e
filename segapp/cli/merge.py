"""``segapp-merge OUTPUT``: combine the shards of ``segapp-predict --shard`` runs into one result.

Checks that every shard in OUTPUT was made with one model and one set of resolved options (the
record --resume checks; the shard count included) and that every input of the recorded input
folder was done exactly once, then writes one predictions.csv (input order), run.json (summed
counts and stage timings, the shards listed) and review.html.

Exit codes: 0 complete; 1 incomplete: merged what exists and listed the missing inputs by shard,
each with the command that finishes it (--resume); 2 refused, nothing merged: no shard parts,
shards of different runs (the differing files and keys named), or a shard still running (its
lock held); 4 OUTPUT cannot be written. See docs/inference.md, "Sharded runs".
"""

from __future__ import annotations

import sys

from segapp.cli.errors import EXIT_WRITE_ERROR, fail
from segapp.cli.parsing import console_parser
from segapp.inference.lock import LockError
from segapp.inference.merge import EXIT_REFUSED, MergeRefused, merge_shards
from segapp.inference.outputs import OutputError


def main(argv: list[str] | None = None) -> None:
    p = console_parser("segapp-merge", __doc__)
    p.add_argument("output", help="the --output folder the shards wrote into")
    p.add_argument(
        "--break-lock",
        action="store_true",
        help="merge although a shard's lock is still there (check that its run is gone: another host, a container)",
    )
    p.add_argument("--review-cards", type=int, default=None, help="cards on review.html (default: the shards')")
    args = p.parse_args(argv)
    if args.review_cards is not None and args.review_cards < 0:
        fail("segapp-merge", f"--review-cards must be >= 0, got {args.review_cards}", EXIT_REFUSED)
    try:
        result = merge_shards(args.output, break_lock=args.break_lock, review_cards=args.review_cards)
    except (MergeRefused, LockError) as e:
        fail("segapp-merge", e, EXIT_REFUSED)
    except OutputError as e:
        fail("segapp-merge", e, EXIT_WRITE_ERROR)
    for line in result.lines():
        print(line)
    sys.exit(result.exit_code)


if __name__ == "__main__":
    main()
