"""Study files: expansion, budgets, schema errors, and validation against the CLI parser."""

from __future__ import annotations

from pathlib import Path

import pytest

from segapp.ablation import StudyError, load_study, validate_study
from segapp.ablation.study import cli_args

REPO = Path(__file__).resolve().parents[2]
BASE = [str(REPO / "configs" / "quickstart.yaml")]


def _study(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    return path


def test_grid_is_crossed_with_variants_and_budget_subset_become_cli_keys(tmp_path):
    study = load_study(
        _study(
            tmp_path,
            """
seeds: 2
budget: {epochs: 3, minutes: 90.5}
subset: 40
overrides: {data.image_size: 32}
variants:
  a: {model.net.init_args.norm: batch}
  b: {model.net.init_args.norm: none}
grid:
  model.net.init_args.init: [he, zeros]
""",
        )
    )
    assert study.name == "s" and study.seeds == [0, 1]
    assert [v.name for v in study.variants] == ["a-init=he", "a-init=zeros", "b-init=he", "b-init=zeros"]
    merged = study.run_overrides(study.variants[3])
    assert merged["trainer.max_epochs"] == 3
    assert merged["trainer.max_time"] == "00:01:30:30"
    assert merged["data.train_subset"] == 40
    assert merged["model.net.init_args.norm"] == "none" and merged["model.net.init_args.init"] == "zeros"


def test_variant_values_win_over_study_overrides(tmp_path):
    study = load_study(
        _study(tmp_path, "overrides: {model.net.init_args.depth: 3}\ngrid: {model.net.init_args.depth: [2, 4]}\n")
    )
    assert [study.run_overrides(v)["model.net.init_args.depth"] for v in study.variants] == [2, 4]


def test_cli_args_pass_non_strings_as_json():
    assert cli_args({"a.b": "he", "c": None, "d": True, "e": {"class_path": "X"}}) == [
        "--a.b=he",
        "--c=null",
        "--d=true",
        '--e={"class_path": "X"}',
    ]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("variants: {a: {}}\nbudgt: {epochs: 1}\n", "unknown study keys ['budgt']"),
        ("variants: {a: {}}\nbudget: {epochs: 0}\n", "budget.epochs"),
        ("variants: {a: {}}\nbudget: {hours: 1}\n", "budget: expected"),
        ("variants: {a: {}}\nseeds: [1, 1]\n", "seeds"),
        ("grid: {model.net.init_args.init: []}\n", "grid: expected"),
        ("seeds: 2\n", "needs 'variants' and/or 'grid'"),
        ("variants: {'a/b': {}}\n", "variant names"),
        ("variants: {a: he}\n", "variant 'a': expected a mapping"),
    ],
)
def test_schema_errors_name_the_problem(tmp_path, text, needle):
    with pytest.raises(StudyError, match=None) as e:
        load_study(_study(tmp_path, text))
    assert needle in str(e.value)


def test_invalid_literal_value_names_key_and_choices(tmp_path):
    study = load_study(_study(tmp_path, "grid: {model.net.init_args.norm: [batch, layer]}\n"))
    with pytest.raises(StudyError) as e:
        validate_study(study, BASE)
    msg = str(e.value)
    assert "'norm=layer'" in msg and "'model.net.init_args.norm'" in msg and "'layer'" in msg
    assert "expected one of batch, instance, group, none" in msg


def test_unknown_key_is_named(tmp_path):
    study = load_study(
        _study(tmp_path, "overrides: {data.image_size: 32}\nvariants: {a: {model.net.init_args.nrm: batch}}\n")
    )
    with pytest.raises(StudyError) as e:
        validate_study(study, BASE)
    assert "'model.net.init_args.nrm'" in str(e.value) and "does not exist" in str(e.value)


def test_wrong_type_for_a_key_is_rejected(tmp_path):
    study = load_study(_study(tmp_path, "variants: {a: {data.image_size: big}}\n"))
    with pytest.raises(StudyError, match="data.image_size"):
        validate_study(study, BASE)


def test_a_valid_study_with_class_swaps_passes(tmp_path):
    study = load_study(
        _study(
            tmp_path,
            """
variants:
  constant: {model.scheduler: null}
  step: {model.scheduler: {class_path: torch.optim.lr_scheduler.StepLR, init_args: {step_size: 2}}}
""",
        )
    )
    assert validate_study(study, BASE) is None
    step = study.run_overrides(next(v for v in study.variants if v.name == "step"))
    assert step["model.scheduler"]["class_path"] == "torch.optim.lr_scheduler.StepLR"


STUDIES = sorted((REPO / "configs" / "ablation").glob("*.yaml"))


def test_the_seven_studies_are_shipped():
    names = {p.stem for p in STUDIES}
    assert {"init", "norm", "depth", "unet", "regularisation", "lr_schedule", "transfer"} <= names
    assert {"kvasir_depth", "kvasir_regularisation", "kvasir_transfer"} <= names


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.stem)
def test_shipped_studies_validate(path, monkeypatch):
    monkeypatch.chdir(REPO)  # Kvasir studies name configs/data/kvasir.yaml relative to the repo root
    study = load_study(path)
    assert len(study.seeds) >= 2 and len(study.variants) >= 2
    validate_study(study, BASE)
