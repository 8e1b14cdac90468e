"""``segapp-eval``: score predicted masks against ground truth and write a report.

segapp-eval --pred PRED_DIR --gt DATA_DIR --out REPORT_DIR   # metrics.csv, summary.json, report.html
segapp-eval --pred PRED_DIR --gt MASK_DIR [--images IMAGE_DIR] --out REPORT_DIR   # ground truth: masks only
segapp-eval --pred PRED_DIR --gt DATA_DIR --probs [PROBS_DIR] --out REPORT_DIR   # + calibration, uncertainty
segapp-eval --compare RUN_A RUN_B [--out DIR]                # paired test of per-image Dice
"""

from __future__ import annotations

import argparse
import math
import sys

from segapp.cli.errors import run_console
from segapp.cli.parsing import console_parser
from segapp.eval import EmptyPolicy, MetricConfig, ReportOptions, pair_folders, write_report
from segapp.eval.compare import compare_runs
from segapp.eval.pairing import attach_probs
from segapp.eval.stats import FAILURE_DICE


def build_parser() -> argparse.ArgumentParser:
    p = console_parser("segapp-eval", __doc__)
    p.add_argument("--pred", help="predicted masks: the --output folder of segapp-predict, or a folder of masks")
    p.add_argument(
        "--gt", help="ground truth: a dataset folder (e.g. with images/ and masks/) or a folder of masks only"
    )
    p.add_argument(
        "--layout",
        default="auto",
        help="ground-truth layout, as data.layout: auto, paired, isic2018, suffix, csv, or masks (a folder of "
        "masks only) (default auto)",
    )
    p.add_argument("--mask-suffix", help="suffix or paired layout: mask stem = image stem + this (e.g. -label)")
    p.add_argument("--mask-dir", help="suffix layout: folder of the masks, relative to --gt (e.g. ann)")
    p.add_argument(
        "--images", help="with a --gt folder of masks only: the input images, matched by name, drawn under the contours"
    )
    p.add_argument(
        "--foreground-labels",
        type=int,
        nargs="+",
        metavar="LABEL",
        help="label-map ground truth: the labels that are lesion (default: any non-zero), as data.foreground_labels",
    )
    p.add_argument(
        "--probs",
        nargs="?",
        const="",
        metavar="DIR",
        help="probability maps (segapp-predict --save-probs: <rel>.prob.png or .prob.npy; default DIR: --pred): "
        "adds calibration (ECE, reliability diagram) and per-image uncertainty to the report",
    )
    p.add_argument(
        "--failure-dice",
        type=float,
        default=FAILURE_DICE,
        help=f"with --probs: Dice below this is a failure the uncertainty should flag (default {FAILURE_DICE})",
    )
    p.add_argument(
        "--missing",
        choices=("fail", "empty"),
        default="fail",
        help="ground-truth images without a prediction: fail (listed, exit 1) or empty (scored as an empty "
        "prediction: Dice 0, or 1 on an empty ground truth) (default fail)",
    )
    p.add_argument("--out", help="report folder")
    p.add_argument(
        "--compare", nargs=2, metavar=("A", "B"), help="compare two runs (eval folders or metrics.csv files)"
    )
    p.add_argument("--metric", default="dice", help="per-image column compared by --compare (default dice)")
    p.add_argument("--worst", type=int, default=12, help="worst cases shown in the gallery (default 12)")
    p.add_argument(
        "--spacing", type=float, nargs=2, metavar=("ROW_MM", "COL_MM"), help="pixel size in mm; distances in mm"
    )
    p.add_argument("--tolerance", type=float, default=2.0, help="boundary F1/NSD tolerance, px or mm (default 2)")
    p.add_argument(
        "--empty-empty",
        default="1",
        help="score when GT and prediction are both empty: a number in [0,1] or nan (default 1)",
    )
    p.add_argument(
        "--distance-empty",
        choices=("nan", "max"),
        default="nan",
        help="HD95/ASSD when one mask is empty (default nan: left out and counted)",
    )
    p.add_argument("--connectivity", type=int, choices=(4, 8), default=8, help="lesion connectivity (default 8)")
    p.add_argument(
        "--lesion-min-overlap", type=float, default=0.0, help="overlap share that detects a lesion (default 0: any)"
    )
    p.add_argument(
        "--min-lesion-area",
        type=int,
        default=10,
        help="smaller components are not lesions for detection counts, px (default 10)",
    )
    p.add_argument(
        "--gt-threshold",
        type=float,
        default=127,
        help="threshold for grey ground-truth masks on 0-255, as data.mask_threshold (default 127)",
    )
    p.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    return p


def _f(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.4f}"


def _ci(ci: list, note: str | None, signed: bool = False) -> str:
    """``[0.8123, 0.9012]``, or ``[CI n/a: 1 image(s), fewer than 5]`` (a one-image CI has zero width)."""
    lo, hi = ci
    if note or lo is None or hi is None or math.isnan(lo) or math.isnan(hi):
        return f"[CI n/a{': ' + note.removeprefix('no 95 % CI: ') if note else ''}]"
    return f"[{lo:+.4f}, {hi:+.4f}]" if signed else f"[{lo:.4f}, {hi:.4f}]"


def _hd95(summary: dict, unit: str) -> str:
    """``HD95 median 3.2 px``, or ``HD95 n/a (...)`` when it is undefined on every image."""
    hd = summary["metrics"]["hd95"]
    if hd["median"] is None:
        return f"HD95 n/a (undefined on all {hd['n_nan']} images: a mask is empty; see --distance-empty)"
    return f"HD95 median {_f(hd['median'])} {unit}"


def _evaluate(args: argparse.Namespace) -> int:
    if not (args.pred and args.gt and args.out):
        raise ValueError("--pred, --gt and --out are all needed (or use --compare A B)")
    empty = math.nan if args.empty_empty.lower() == "nan" else float(args.empty_empty)
    cfg = MetricConfig(
        policy=EmptyPolicy(empty_empty=empty, distance_empty=args.distance_empty),
        spacing=tuple(args.spacing) if args.spacing else None,
        tolerance=args.tolerance,
        connectivity=args.connectivity,
        lesion_min_overlap=args.lesion_min_overlap,
        min_lesion_area=args.min_lesion_area,
    )
    labels = tuple(args.foreground_labels) if args.foreground_labels else None
    opts = ReportOptions(
        worst=args.worst,
        n_boot=args.n_boot,
        seed=args.seed,
        gt_threshold=args.gt_threshold,
        foreground_labels=labels,
        failure_dice=args.failure_dice,
    )
    layout_opts = {"mask_suffix": args.mask_suffix, "mask_dir": args.mask_dir}
    pairing = pair_folders(args.pred, args.gt, args.layout, images=args.images, missing=args.missing, **layout_opts)
    source = {"pred": str(args.pred), "gt": str(args.gt), "layout": args.layout}
    cases = pairing.cases
    if args.probs is not None:
        source["probs"] = args.probs or str(args.pred)
        cases, _ = attach_probs(cases, source["probs"], args.pred)
    doc = write_report(args.out, cases, cfg, opts, pairing.unpaired, source=source)
    for w in doc["warnings"]:
        print(f"segapp-eval: warning: {w}", file=sys.stderr)
    s = doc["summary"]
    cov = s["coverage"]
    print(
        f"Dice macro {_f(s['dice_macro'])} over {cov['scored']} of {cov['ground_truth_images']} ground-truth "
        f"images {_ci(s['dice_macro_ci'], s['ci_note'])}, micro {_f(s['dice_micro'])}; "
        f"{_hd95(s, doc['config']['unit'])}"
    )
    print(_coverage_line(cov, len(doc["unpaired"])))
    if "calibration" in doc:
        print(_trust_line(doc))
    print(f"report: {args.out}/report.html")
    return _coverage_exit(cov)


def _coverage_line(cov: dict, n_unpaired: int) -> str:
    """``ground-truth images without a prediction: 3 of 12 (e.g. ...); predictions without ground truth: 0; ...``."""
    n = cov["ground_truth_images"]
    files = cov["without_prediction_files"]
    eg = f" (e.g. {files[0]})" if files else ""
    empty = (
        f"; scored as empty predictions (--missing empty): {len(cov['scored_as_empty'])}"
        if cov["scored_as_empty"]
        else ""
    )
    other = cov["not_scored"] - cov["without_prediction"]
    return (
        f"ground-truth images without a prediction: {cov['without_prediction']} of {n}{eg}{empty}; "
        f"other ground-truth images not scored (unreadable, size differs, image file missing, mask misfit): {other}; "
        f"predictions without ground truth: {cov['predictions_without_ground_truth']}; "
        f"files left out in all: {n_unpaired} (listed in the report)"
    )


def _coverage_exit(cov: dict) -> int:
    """1 when some ground-truth image was not scored (its mean would flatter the model), else 0."""
    if not cov["not_scored"]:
        return 0
    no_image = cov.get("mask_without_image", 0)
    why = (
        f"; {no_image} of them are masks whose image file is missing from the dataset (e.g. "
        f"{cov['mask_without_image_files'][0]}): restore the images, or score the masks folder alone with "
        "--layout masks"
        if no_image
        else ""
    )
    print(
        f"segapp-eval: {cov['not_scored']} of {cov['ground_truth_images']} ground-truth images were not scored, "
        f"so the means are over {cov['scored']} only; expected a prediction for every ground-truth image; fix: "
        f"predict the missing images, or --missing empty to score them as empty predictions{why}",
        file=sys.stderr,
    )
    return 1


def _trust_line(doc: dict) -> str:
    """``calibration on N images: ECE ..., MCE ..., Brier ...; uncertainty finds Dice < 0.8: AUROC ...``."""
    c, u = doc["calibration"], doc["uncertainty"]
    missing = f"; {len(c['missing'])} image(s) without a probability map (listed in the report)" if c["missing"] else ""
    return (
        f"calibration on {c['n_images']} images: ECE {_f(c['ece'])}, MCE {_f(c['mce'])}, Brier {_f(c['brier'])}; "
        f"uncertainty vs failures (Dice < {u['failure_dice']:g}, {u['n_failures']} of {u['n']}): "
        f"AUROC {_f(u['auroc'])}, Spearman rho vs Dice {_f(u['spearman_rho'])}{missing}"
    )


def _compare(args: argparse.Namespace) -> int:
    r = compare_runs(args.compare[0], args.compare[1], args.metric, args.out, seed=args.seed)
    print(
        f"{r['metric']} ({_direction_text(r['direction'])}): A {r['mean_a']:.4f}  B {r['mean_b']:.4f}  "
        f"B-A {r['mean_diff']:+.4f} {_ci(r['mean_diff_ci'], r['ci_note'], signed=True)} "
        f"on {r['n_paired']} paired images "
        f"({_counts_text(r)}); Wilcoxon p = {r['wilcoxon_p']:.3g}"
    )
    if r["n_undefined"]:
        why = (
            "; a mask is empty there: compare dice too, or score both runs with --distance-empty max"
            if r["metric"] in ("hd95", "assd")
            else ""
        )
        print(
            f"left out: {r['n_undefined']} of {r['n_common']} common images where {r['metric']} is undefined "
            f"({r['undefined_b_only']} in B only, {r['undefined_a_only']} in A only, "
            f"{r['undefined_both']} in both{why})"
        )
    if r["only_a"] or r["only_b"]:
        print(f"not paired: {r['only_a']} images only in A, {r['only_b']} only in B")
    if r.get("ground_truth_note"):
        print(f"segapp-eval: warning: {r['ground_truth_note']}", file=sys.stderr)
    return 0


def _direction_text(direction: str | None) -> str:
    """``higher is better``, ``lower is better``, or ``no better direction``."""
    return f"{direction} is better" if direction else "no better direction"


def _counts_text(r: dict) -> str:
    """``B better 3, worse 1, ties 0``; for a metric without a direction ``B higher 3, lower 1, ties 0``."""
    if r["direction"] is None:
        return f"B higher {r['b_higher']}, lower {r['b_lower']}, ties {r['ties']}"
    return f"B better {r['b_better']}, worse {r['b_worse']}, ties {r['ties']}"


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    sys.exit(
        run_console(
            "segapp-eval", lambda: _compare(args) if args.compare else _evaluate(args), also=(ValueError, OSError)
        )
    )


if __name__ == "__main__":
    main()
