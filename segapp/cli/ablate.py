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

from segapp.cli.errors import run_console
from segapp.cli.parsing import console_parser


def build_parser() -> argparse.ArgumentParser:
    p = console_parser("segapp-ablate", __doc__, pass_through=True)
    p.add_argument("--config", action="append", required=True, help="base segapp config; repeat to layer several")
    p.add_argument("--study", required=True, help="study YAML (see configs/ablation/ and docs/ablation.md)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--check", action="store_true", help="only validate the study and list its runs")
    return p


def _checked_study(path: str, configs: list[str], extra: list[str]):
    """Load the study and parse every variant (and the pass-through arguments) with the CLI's parser."""
    from segapp.ablation import StudyError, load_study, validate_study
    from segapp.app import parse_only

    study = load_study(path)
    validate_study(study, [*configs])
    if extra:  # pass-through args must parse too
        err = parse_only([a for c in configs for a in ("--config", c)] + extra)
        if err:
            raise StudyError(f"extra arguments {extra} are rejected by the segapp CLI: {err}")
        _refuse_overlaps(study, extra)
    return study


RUNNER_KEYS = ("trainer.default_root_dir", "seed_everything")
"""Set by the runner for every run (the run folder, the study's seeds)."""


def _refuse_overlaps(study, extra: list[str]) -> None:
    """An extra argument that sets a key the study sets (a variant, ``overrides``, ``budget``) or the
    runner sets would win in every run: arms reported as different trained the same (two init arms
    given ``--model.net.init_args.init xavier`` were bit-identical)."""
    from segapp.ablation import StudyError
    from segapp.plan.given import given_keys

    owned = {k: "the runner" for k in RUNNER_KEYS}
    for v in study.variants:
        for key in study.run_overrides(v):
            owned.setdefault(key, f"the study (variant {v.name})")
    for key in sorted(given_keys(extra)):
        clash = next((k for k in owned if key == k or key.startswith(k + ".") or k.startswith(key + ".")), None)
        if clash is not None:
            raise StudyError(
                f"extra argument --{key}: expected a setting the study leaves alone, got one {owned[clash]} sets "
                f"({clash}); fix: set it in the study's overrides or variants, or drop it"
            )


def main(argv: list[str] | None = None) -> None:
    """Console entry point; a bad study ends with one ``error:`` message and exit code 2."""
    from segapp.ablation import run_study, write_study_report

    argv = sys.argv[1:] if argv is None else argv
    args, extra = build_parser().parse_known_args(argv)
    study = run_console("segapp-ablate", lambda: _checked_study(args.study, args.config, extra), also=(OSError,))
    print(
        f"study {study.name}: {len(study.variants)} variant(s) x {len(study.seeds)} seed(s) = "
        f"{len(study.variants) * len(study.seeds)} run(s)"
    )
    if args.check:
        for v in study.variants:
            print(f"  {v.name}: {study.run_overrides(v)}")
        return
    out = Path(args.out)
    rows = run_console("segapp-ablate", lambda: run_study(study, args.config, out, extra))
    report = write_study_report(study, rows, out, "segapp-ablate " + shlex.join(argv))
    print(f"wrote {out / 'results.csv'} and {report}")
    failed = [r for r in rows if r.get("error")]
    if failed:
        print(f"segapp-ablate: {len(failed)} run(s) failed (report.md lists why); fix them and rerun", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
