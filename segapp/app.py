"""The segapp LightningCLI app: one class, its argument links and run-folder layout, used by the
``segapp`` console script, ``segapp-cv``, the ablation runner and the tests.

Run folder (``trainer.default_root_dir``, e.g. ``runs/quickstart``)::

    checkpoints/best.ckpt   best val/dice so far       checkpoints/last.ckpt   end of the last epoch
    logs/version_N/         config.yaml, metrics.csv, hparams.yaml, TensorBoard events

``--ckpt_path last`` resumes from ``checkpoints/last.ckpt`` of that folder. ``--budget 40m`` plans
the run first (:mod:`segapp.plan`): ``plan.yaml``, ``plan.md`` and ``plan.json`` in that folder.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
# TensorBoard creates logs/version_N first and the CSV logger shares it on purpose.
warnings.filterwarnings("ignore", message="Experiment logs directory .* exists and is not empty")

from lightning.pytorch.callbacks import LearningRateMonitor  # noqa: E402
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI  # noqa: E402
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger  # noqa: E402
from lightning.pytorch.plugins.io import CheckpointIO  # noqa: E402

from segapp.app_errors import one_line_parser_error, refuse_trained_folder  # noqa: E402
from segapp.data import LesionDataModule  # noqa: E402
from segapp.errors import SettingError  # noqa: E402
from segapp.io.archive import checkpoint_problem  # noqa: E402
from segapp.lit import SegmentationModule  # noqa: E402
from segapp.lit.calibrate import TrustCalibration  # noqa: E402
from segapp.lit.callbacks import BestAndLastCheckpoint, RunSummary  # noqa: E402
from segapp.lit.checkpoint_io import AtomicCheckpointIO  # noqa: E402
from segapp.lit.report_callback import EvalReport  # noqa: E402
from segapp.lit.run_info import build_run_info  # noqa: E402
from segapp.machine import cpu_model, cpu_supports_bf16  # noqa: E402
from segapp.plan.apply import ActivePlan, command_start, plan_fit  # noqa: E402
from segapp.plan.given import given_keys  # noqa: E402
from segapp.plan.progress import PlanProgress  # noqa: E402


class SegappArgumentParser(LightningArgumentParser):
    """LightningCLI's parser whose errors are one ``segapp: error:`` line (exit 2), not usage + a tree."""

    def error(self, message: str, ex: Exception | None = None):  # type: ignore[override]
        if not self.exit_on_error:
            return super().error(message, ex)
        print(f"segapp: error: {one_line_parser_error(message)}", file=sys.stderr)
        sys.exit(2)


def _ckpt_dir(root: str | None) -> str:
    return str(Path(root or ".") / "checkpoints")


def _unsafe_pickle(path: Path) -> str | None:
    """Why ``path`` does not load with ``weights_only=True`` (objects beyond plain weights), or None.

    Nothing in the file is run: torch's restricted unpickler refuses unknown globals.
    """
    import pickle

    import torch

    try:
        torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return f"refused by the safe loader (it holds objects beyond plain weights, never run here: {first[:160]})"
    except Exception as e:  # a zip that is not a torch checkpoint, and the like
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return f"not loadable as a torch checkpoint ({type(e).__name__}: {first[:160]})"
    return None


MONITOR_MODES = {"val/loss": "min", "val/dice": "max", "val/iou": "max", "val/dice_at_best_threshold": "max"}
"""The direction of each metric segapp logs that a checkpoint may monitor (other names are not checked)."""


def check_monitor_mode(monitor: str | None, mode: str | None) -> None:
    """Refuse a checkpoint monitor whose direction the mode contradicts: ``--checkpoint.monitor
    val/loss`` under the default ``mode: max`` kept the epoch with the highest loss as best.ckpt
    (and the trust calibration and inference choice used it). Checked before any planning.

    Raises:
        SettingError: naming the mode to set.
    """
    expected = MONITOR_MODES.get(str(monitor))
    if expected and mode != expected:
        raise SettingError(
            f"checkpoint.monitor {monitor} with checkpoint.mode {mode}: expected mode {expected} for it (lower is "
            f"better for a loss, higher for Dice/IoU), or best.ckpt keeps the worst epoch; fix: --checkpoint.mode "
            f"{expected}"
        )


class SegappCLI(LightningCLI):
    """LightningCLI with a fixed run-folder layout, a best/last checkpoint and TB + CSV loggers."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_lightning_class_args(BestAndLastCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "trainer.default_root_dir": "runs/default",
                "checkpoint.monitor": "val/dice",
                "checkpoint.mode": "max",
                "checkpoint.filename": "best",
                "checkpoint.save_last": True,
                "checkpoint.auto_insert_metric_name": False,
                "checkpoint.enable_version_counter": False,
            }
        )
        parser.link_arguments("trainer.default_root_dir", "checkpoint.dirpath", compute_fn=_ckpt_dir)
        parser.link_arguments("data.in_channels", "model.net.init_args.in_channels")
        parser.add_argument(
            "--budget",
            type=str | None,
            default=None,
            help="Plan the run for this wall-clock budget (40m, 1h30m, 90s, 2400 seconds) from the data and "
            "step times measured here; writes plan.yaml/plan.md to the run folder (docs/planner.md)",
        )
        parser.add_argument("--plan_only", type=bool, default=False, help="With --budget: plan, print, do not train")

    def __init__(self, *args, **kwargs) -> None:
        self.started = command_start()  # the --budget clock: this command, not what its process did before
        super().__init__(*args, **kwargs)

    def parse_arguments(self, parser, args) -> None:
        """Keep the arguments as given: a planned run tells the user's settings by key, not value."""
        self._argv = [str(a) for a in args] if isinstance(args, (list, tuple)) else sys.argv[1:] if args is None else []
        super().parse_arguments(parser, args)

    def before_instantiate_classes(self) -> None:
        """With ``--budget``: plan the run, then train ``<run>/plan.yaml`` parsed as if given with ``--config``."""
        self.active_plan: ActivePlan | None = None
        sub = self.subcommand
        cfg = self.config.get(sub) if sub else None
        if sub == "fit" and cfg is not None:
            check_monitor_mode(cfg.get("checkpoint.monitor"), cfg.get("checkpoint.mode"))
        if cfg is None or (cfg.get("budget") is None and not cfg.get("plan_only")):
            self._refuse_overwrite(cfg)
            return
        if sub != "fit":
            raise SettingError(
                f"--budget: expected with segapp fit, got segapp {sub}; fix: plan with `segapp fit --budget 40m ...`"
            )
        parser = self._parser(sub)
        self.active_plan = plan_fit(parser, cfg, started=self.started, user_keys=given_keys(self._argv))
        self.config[sub] = parser.parse_args(["--config", str(self.active_plan.paths["yaml"])])
        # Planning drew from (and the step timer reseeded) torch's RNG after Lightning seeded it:
        # seed again, so the run starts where `segapp fit --config plan.yaml` starts.
        self._set_seed()
        if self.active_plan.plan_only:
            self.subcommand = None  # nothing is built or run

    def _refuse_overwrite(self, cfg) -> None:
        """A new ``segapp fit`` (not resuming, not a dry run) must not write over a trained model's
        checkpoints (a planned run is checked by :func:`segapp.plan.apply.plan_fit`)."""
        if self.subcommand != "fit" or cfg.get("ckpt_path") or cfg.get("trainer.fast_dev_run"):
            return
        refuse_trained_folder(cfg.get("trainer.default_root_dir"))

    def instantiate_classes(self) -> None:
        if getattr(self, "active_plan", None) is not None and self.active_plan.plan_only:
            return
        super().instantiate_classes()

    def instantiate_trainer(self, **kwargs):
        cfg = self._get(self.config_init, "trainer", default={})
        if cfg.get("logger") in (True, None):
            root = cfg.get("default_root_dir") or "runs/default"
            tb = TensorBoardLogger(save_dir=root, name="logs", default_hp_metric=False)
            kwargs["logger"] = [tb, CSVLogger(save_dir=root, name="logs", version=tb.version)]
        plugins = cfg.get("plugins") or []
        plugins = list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
        if not any(isinstance(p, CheckpointIO) for p in plugins):  # unless the user brings their own
            kwargs["plugins"] = [*plugins, AtomicCheckpointIO()]
        return super().instantiate_trainer(**kwargs)

    def _parse_ckpt_path(self) -> None:
        """Check ``--ckpt_path`` before LightningCLI opens it (it reads the hyper-parameters at parse time)."""
        self._check_ckpt_path()
        super()._parse_ckpt_path()

    def _ckpt_file(self) -> Path | None:
        """The local file ``--ckpt_path`` names (``last``: the run folder's), or ``None``: none given,
        ``last`` not written yet (Lightning warns and starts from scratch, as documented), or one of
        Lightning's keywords or a remote path (Lightning resolves and checks them)."""
        sub = self.config.get("subcommand")
        given = self.config[sub].get("ckpt_path") if sub else None
        if not given or given in ("best", "hpc") or "://" in str(given) or str(given).startswith("registry"):
            return None
        if given != "last":
            return Path(given)
        path = Path(self._ckpt_folder()) / "last.ckpt"
        return path if path.exists() else None

    def _ckpt_folder(self) -> str:
        cfg = self.config[self.config.get("subcommand")]
        return cfg.get("checkpoint.dirpath") or _ckpt_dir(cfg.get("trainer.default_root_dir"))

    def _check_ckpt_path(self) -> None:
        """Refuse an empty, truncated, unsafe or missing ``--ckpt_path`` with one line and the fix."""
        path = self._ckpt_file()
        if path is None:
            return
        problem = checkpoint_problem(path) or _unsafe_pickle(path)
        if problem is not None:
            best = Path(self._ckpt_folder()) / "best.ckpt"
            alt = f"--ckpt_path {best}" if best != path and best.exists() else "another checkpoint"
            raise SettingError(
                f"ckpt_path {path}: expected a checkpoint written by segapp, but it is "
                f"{problem}; fix: resume from {alt} or start again without --ckpt_path"
            )

    def _record_run(self) -> None:
        """Give the module the resolved config, git commit and versions (saved in checkpoints)."""
        cfg = self.config.get(str(self.subcommand), self.config)
        text = self._parser(self.subcommand).dump(cfg, skip_none=False)
        self.model.run_info = build_run_info(text, None)

    def _follow_checkpoint(self) -> None:
        """With ``--ckpt_path``: the data is fed as the checkpoint was and its split is checked
        (:mod:`segapp.data.from_checkpoint`); settings other than the checkpoint's are refused here."""
        path = self._ckpt_file()
        if path is None or not isinstance(self.datamodule, LesionDataModule):
            return
        from segapp.data.from_checkpoint import CheckpointData

        resume = self.subcommand == "fit"
        self.datamodule.follow_checkpoint(CheckpointData.read(path), resume, given_keys(self._argv))

    def _require_checkpoint(self) -> None:
        """Refuse ``segapp validate/test/predict`` without a checkpoint to load: Lightning then scores
        the net as built, never trained, and the report looked like any other (exit 0).

        Raises:
            SettingError: naming what was given and the fix.
        """
        sub = str(self.subcommand)
        given = self.config[sub].get("ckpt_path")
        if given and (given == "hpc" or "://" in str(given) or str(given).startswith("registry")):
            return  # Lightning resolves these and says when they are missing
        if self._ckpt_file() is None:
            what = {
                "last": f"no last.ckpt in {self._ckpt_folder()}",
                "best": "--ckpt_path best names the best checkpoint of a fit in this same process",
            }.get(str(given), "no --ckpt_path was given")
            raise SettingError(
                f"segapp {sub} scores a trained model, but {what}, so it would score a net that was never trained; "
                f"fix: --ckpt_path runs/<run>/checkpoints/best.ckpt (the file segapp fit wrote)"
            )

    def before_validate(self) -> None:
        self._require_checkpoint()
        self._follow_checkpoint()

    def before_test(self) -> None:
        """``segapp test`` writes the evaluation report for the test split to ``<log_dir>/test_report/``."""
        self._require_checkpoint()
        self._follow_checkpoint()
        if not any(isinstance(c, EvalReport) for c in self.trainer.callbacks):
            self.trainer.callbacks.append(EvalReport())

    def before_predict(self) -> None:
        self._require_checkpoint()
        self._follow_checkpoint()

    def before_fit(self) -> None:
        self._follow_checkpoint()
        self._record_run()
        _warn_emulated_bf16(self.trainer)
        if getattr(self, "active_plan", None) is not None:
            p = self.active_plan
            self.trainer.callbacks.append(PlanProgress(p.plan.epoch_ends(), p.plan.budget_s, p.started))
        self.trainer.callbacks.append(RunSummary())
        from segapp.lit.choose_inference import InferenceChoice  # max_images=0 (added by the user) switches it off

        cbs = self.trainer.callbacks
        if not any(isinstance(c, InferenceChoice) for c in cbs):
            cbs.append(InferenceChoice())
        if not any(isinstance(c, TrustCalibration) for c in cbs):  # before the choice (a plan configures one)
            cbs.insert(next(i for i, c in enumerate(cbs) if isinstance(c, InferenceChoice)), TrustCalibration())
        from segapp.lit.preview import ValidationPreview  # k=0 (added by the user) switches it off

        if not any(isinstance(c, ValidationPreview) for c in self.trainer.callbacks):
            self.trainer.callbacks.append(ValidationPreview())
        if self.trainer.loggers and not any(isinstance(c, LearningRateMonitor) for c in self.trainer.callbacks):
            self.trainer.callbacks.append(LearningRateMonitor(logging_interval="epoch"))


def _warn_emulated_bf16(trainer) -> None:
    """Say so when a CPU run trains in bf16 without bf16 hardware: 8-25x slower (docs/benchmarks.md),
    so a ``trainer.max_time`` (a plan made on another machine sets one) stops it after a fraction
    of its epochs, a much weaker model than the same config gives where it was planned."""
    from lightning.pytorch.accelerators import CPUAccelerator

    if isinstance(trainer.accelerator, CPUAccelerator) and "bf16" in str(trainer.precision) and not cpu_supports_bf16():
        print(
            f"warning: trainer.precision {trainer.precision} on a CPU without AMX-BF16 or AVX512-BF16 "
            f"({cpu_model()}): bf16 is emulated here, 8-25x slower than fp32 (a plan.yaml keeps the precision "
            "of the machine it was planned on); fix: --trainer.precision 32-true, or plan again here from the "
            "plan_input.yaml beside the plan with --budget",
            file=sys.stderr,
            flush=True,
        )


def cli(args: list[str] | None = None, run: bool = True) -> SegappCLI:
    """Build (and by default run) the app; ``args`` as on the command line, after the program name."""
    return SegappCLI(
        SegmentationModule,
        LesionDataModule,
        auto_configure_optimizers=False,
        save_config_kwargs={"overwrite": True},
        parser_class=SegappArgumentParser,
        args=args,
        run=run,
    )


class _ParseOnly(SegappCLI):
    def instantiate_classes(self) -> None:
        pass


@contextlib.contextmanager
def bare_argv() -> Iterator[None]:
    """Hide the caller's ``sys.argv`` (LightningCLI warns when it gets both ``args`` and ``sys.argv``)."""
    argv, sys.argv = sys.argv, sys.argv[:1]
    try:
        yield
    finally:
        sys.argv = argv


def parsed_app(args: list[str], **parser_kwargs) -> _ParseOnly:
    """The app with ``args`` parsed as ``segapp fit`` parses them, nothing instantiated."""
    with bare_argv():
        return _ParseOnly(
            SegmentationModule,
            LesionDataModule,
            auto_configure_optimizers=False,
            args=args,
            run=False,
            parser_class=SegappArgumentParser,
            parser_kwargs=parser_kwargs,
        )


def parse_only(args: list[str]) -> str | None:
    """Parse ``args`` (``--config ... --key=value``; a leading ``fit`` is dropped) like ``segapp fit``,
    without instantiating anything (a GPU trainer config parses on a CPU-only machine).

    Returns:
        ``None`` when the parser accepts them, otherwise the parser's error message on one line.
    """
    if args and args[0] == "fit":
        args = args[1:]
    quiet = logging.getLogger("lightning.fabric.utilities.seed")
    level = quiet.level
    quiet.setLevel(logging.WARNING)  # "Seed set to N" once per parse is noise here
    try:
        with contextlib.redirect_stderr(io.StringIO()) as err:
            parsed_app(args, exit_on_error=False)
    except SystemExit:
        return err.getvalue().strip() or "the parser exited without a message"
    except Exception as e:  # jsonargparse's ArgumentError and errors from config files
        return one_line_parser_error(str(e))
    finally:
        quiet.setLevel(level)
    return None
