"""Several seeds of bench/auto_compare.py on one dataset: each seed's paired difference and the
difference over all seeds, with a CI that also resamples the seeds.

One run per arm cannot tell the plan's lead from seed noise (about +-0.01 Dice at 10 CPU minutes,
docs/benchmarks.md). Run the comparison with ``--seed N`` for a few N, then:

    .venv/bin/python bench/seeds_report.py runs/auto_compare/ultrasound_10m_amx \\
        runs/auto_compare/ultrasound_10m_amx_s1 runs/auto_compare/ultrasound_10m_amx_s2 \\
        --out bench/results/seeds_ultrasound_10m_amx

A plan replayed with one setting changed (``--arms recipe --recipe OUT/auto/plan.yaml`` into the
folder ``OUT_ema``, same ``--seed``) pairs with ``--first recipe@_ema --second recipe``: the arm
``recipe`` of ``OUT_ema`` against that of ``OUT``.

Reads each OUT's ``run.json``, ``compare.json`` and ``eval/<arm>/metrics.csv``; writes
``--out``.md and .json. Statistics: segapp.eval.stats (``paired_compare`` per seed,
``seeds_compare`` over the seeds), 2000 resamples, seed 0.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from auto_compare_report import SMALL, fmt_ci, read_json, scores, small_images

from segapp.eval.report import json_safe, read_metrics_csv
from segapp.eval.stats import paired_compare, seeds_compare


def run_seed(info: Mapping) -> str:
    """The ``--seed`` a run was started with, from its argv; ``0`` (both arms' default) when none."""
    argv = [str(a) for a in info.get("argv", [])]
    for i, a in enumerate(argv):
        if a == "--seed" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--seed="):
            return a.split("=", 1)[1]
    return "0"


def _arm(out: Path, spec: str) -> tuple[str, Path]:
    """``ARM`` (in ``out``) or ``ARM@SUFFIX`` (in the folder named ``out`` + ``SUFFIX``): its name and folder."""
    arm, _, suffix = spec.partition("@")
    return arm, Path(str(out) + suffix)


def load_run(out: Path, first: str, second: str) -> dict:
    """One comparison folder: its seed, CPU, per-image Dice of both arms and what the plan trained.

    An arm written ``ARM@SUFFIX`` is read from the folder ``out`` + ``SUFFIX`` (e.g. a replay of the
    same plan with one setting changed, run into its own folder with the same ``--seed``)."""
    arms = [_arm(out, spec) for spec in (first, second)]
    folders = list(dict.fromkeys(folder for _, folder in arms))
    infos = {f: read_json(f / "run.json") for f in folders}
    comps = {f: read_json(f / "compare.json") for f in folders}
    paths = [folder / "eval" / arm / "metrics.csv" for arm, folder in arms]
    missing = [str(p) for p in paths if not p.is_file()]
    if None in infos.values() or None in comps.values() or missing:
        raise SystemExit(
            f"{out}: expected run.json, compare.json and {', '.join(str(p) for p in paths)} of a finished "
            f"bench/auto_compare.py run; missing {missing or 'run.json/compare.json'}. "
            "Fix: finish or rerun that comparison."
        )
    seeds = {run_seed(i) for i in infos.values()}
    if len(seeds) > 1:
        raise SystemExit(
            f"{out}: expected both arms trained with one seed, got {sorted(seeds)} in {[str(f) for f in folders]}; "
            "fix: pair folders run with the same --seed"
        )
    info, comp = infos[folders[0]], comps[folders[0]]
    rows = [read_metrics_csv(p) for p in paths]
    fit = {}
    for spec, (arm, folder) in zip((first, second), arms, strict=True):
        models = {m["model"]: m["training"].get("wall_over_budget") for m in comps[folder].get("models", [])}
        fit[spec] = models.get(arm)
    return {
        "out": str(out),
        "seed": run_seed(info),
        "dataset": info.get("dataset"),
        "budget_min": info.get("budget_min"),
        "cpu": info.get("cpu") or comp.get("cpu", {}).get("label"),
        "rows": rows,
        "fit": fit,
        "plan": comp.get("plan"),
    }


def build(outs: Sequence[Path], first: str = "auto", second: str = "reference") -> dict:
    """Per-seed and all-seed differences ``first - second``, on all test images and the small-lesion ones."""
    runs = [load_run(o, first, second) for o in outs]
    seeds = [r["seed"] for r in runs]
    if len(set(seeds)) < len(seeds):
        twice = sorted({s for s in seeds if seeds.count(s) > 1})
        raise SystemExit(
            f"expected one run per seed, got seed(s) {twice} more than once; fix: pass each seed's folder once"
        )
    kinds = {(r["dataset"], r["budget_min"]) for r in runs}
    if len(kinds) > 1:
        raise SystemExit(f"expected runs of one dataset and budget, got {sorted(map(str, kinds))}; fix: pass one set")
    small = small_images(runs[0]["rows"][0])
    out = {"dataset": runs[0]["dataset"], "budget_min": runs[0]["budget_min"], "first": first, "second": second}
    out |= {"cpus": sorted({r["cpu"] for r in runs}), "small_limit": SMALL, "small_images": len(small), "seeds": []}
    for r in runs:
        fa, sa = (scores(x) for x in r["rows"])
        res = paired_compare(sa, fa)
        out["seeds"].append({k: r[k] for k in ("seed", "out", "cpu", "fit", "plan")} | {"all": res})
    for name, only in (("all", None), ("small", small)):
        firsts = [scores(r["rows"][0], only) for r in runs]
        seconds = [scores(r["rows"][1], only) for r in runs]
        try:
            out[f"over_seeds_{name}"] = seeds_compare(seconds, firsts) if only is None or only else None
        except ValueError as err:
            raise SystemExit(f"{', '.join(str(o) for o in outs)}: {err}") from None
    return out


def _seed_line(s: Mapping) -> str:
    a, p = s["all"], s.get("plan") or {}
    sched = f"{p.get('train_size_schedule')} -> " if p.get("train_size_schedule") else ""
    plan = f"{sched}{p.get('image_size')} px, {p.get('epochs_trained')} epochs" if p else "-"
    fit = ", ".join(f"{k} {v:.2f}x" for k, v in s["fit"].items() if v is not None)
    return (
        f"| {s['seed']} | {a['mean_b']:.3f} | {a['mean_a']:.3f} | {fmt_ci(a['mean_diff'], a['mean_diff_ci'])} "
        f"| {a['b_better']}/{a['b_worse']}/{a['ties']} | {a['wilcoxon_p']:.2g} | {plan} | {fit} | {s['cpu']} |"
    )


def _over_line(label: str, o: Mapping | None) -> str:
    if not o:
        return f"| {label} | - | - | - | - | - | - |"
    return (
        f"| {label} ({o['n_images']} images) | {o['mean_b']:.3f} | {o['mean_a']:.3f} "
        f"| {fmt_ci(o['mean_diff'], o['ci_images'])} | {fmt_ci(o['mean_diff'], o['ci_seeds_and_images'])} "
        f"| {o['b_better']}/{o['b_worse']}/{o['ties']} | {o['wilcoxon_p']:.2g} |"
    )


def markdown(rep: Mapping) -> str:
    """The two tables: one row per seed, then the difference over all seeds."""
    f, s = rep["first"], rep["second"]
    lines = [
        f"# {rep['dataset']}, {rep['budget_min']:g} min: {f} - {s} over {len(rep['seeds'])} seeds",
        "",
        f"Each seed trains both arms again (`bench/auto_compare.py --seed N`; the test split and the plan's "
        f"validation split stay fixed). Per-image Dice at original resolution; {f} - {s}, paired.",
        "",
        f"| seed | {f} | {s} | {f} - {s} [95 % paired CI] | better/worse/ties | Wilcoxon p "
        "| plan: size, epochs trained | fit (x budget) | CPU |",
        "|---|---|---|---|---|---|---|---|---|",
        *(_seed_line(x) for x in rep["seeds"]),
        "",
        "Over the seeds: each image's Dice averaged over an arm's seeds. CI over images: paired bootstrap "
        "of the images, given these seeds; CI over seeds and images: each arm's seeds resampled too "
        "(wider when the seeds disagree).",
        "",
        f"| images | {f} | {s} | {f} - {s} [CI over images] | [CI over seeds and images] "
        "| better/worse/ties | Wilcoxon p |",
        "|---|---|---|---|---|---|---|",
        _over_line("all", rep["over_seeds_all"]),
        _over_line(f"lesion < {rep['small_limit'] * 100:g} %", rep["over_seeds_small"]),
    ]
    if len(rep["cpus"]) > 1:
        lines += ["", f"The runs ran on more than one CPU: {'; '.join(rep['cpus'])}."]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("outs", type=Path, nargs="+", help="OUT folders of bench/auto_compare.py, one per seed")
    p.add_argument("--out", type=Path, required=True, help="writes OUT.md and OUT.json")
    p.add_argument("--first", default="auto", help="ARM, or ARM@SUFFIX: the arm of the folder OUT + SUFFIX")
    p.add_argument("--second", default="reference", help="ARM, or ARM@SUFFIX (as --first)")
    args = p.parse_args()
    rep = build(args.outs, args.first, args.second)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(json_safe(rep), indent=1))
    args.out.with_suffix(".md").write_text(markdown(rep))
    print(markdown(rep))


if __name__ == "__main__":
    main()
