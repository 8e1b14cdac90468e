"""``segapp-ablate``: run an ablation study (variants x seeds) and report what each trick does.

    segapp-ablate --config configs/quickstart.yaml --study configs/ablation/init.yaml --out runs/ablation/init

Arguments it does not know go to every ``segapp fit`` run (e.g. ``--data.root DIR``). The whole
study is checked with the CLI's parser before any training. Writes ``OUT/results.csv``,
``OUT/<study>_curves.png``, ``OUT/report.md`` and one run folder per (variant, seed) under
``OUT/runs/``; rerunning skips finished runs (their ``DONE.json``).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="segapp-ablate",
        description=__doc__,
        allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", action="append", required=True, help="base segapp config; repeat to layer several")
    p.add_argument("--study", required=True, help="study YAML (see configs/ablation/ and docs/ablation.md)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--check", action="store_true", help="only validate the study and list its runs")
    return p


def main(argv: list[str] | None = None) -> None:
    """Console entry point; a bad study ends with one ``error:`` message and exit code 2."""
    from segapp.ablation import StudyError, load_study, run_study, validate_study, write_study_report

    argv = sys.argv[1:] if argv is None else argv
    args, extra = build_parser().parse_known_args(argv)
    try:
        study = load_study(args.study)
        validate_study(study, [*args.config])
        if extra:  # pass-through args must parse too
            from segapp.app import parse_only

            err = parse_only([a for c in args.config for a in ("--config", c)] + extra)
            if err:
                raise StudyError(f"extra arguments {extra} are rejected by the segapp CLI:\n{err}")
    except (StudyError, OSError) as e:
        print(f"segapp-ablate: error: {e}", file=sys.stderr)
        sys.exit(2)
    print(
        f"study {study.name}: {len(study.variants)} variant(s) x {len(study.seeds)} seed(s) = "
        f"{len(study.variants) * len(study.seeds)} run(s)"
    )
    if args.check:
        for v in study.variants:
            print(f"  {v.name}: {study.run_overrides(v)}")
        return
    out = Path(args.out)
    rows = run_study(study, args.config, out, extra)
    report = write_study_report(study, rows, out, "segapp-ablate " + shlex.join(argv))
    print(f"wrote {out / 'results.csv'} and {report}")


if __name__ == "__main__":
    main()
