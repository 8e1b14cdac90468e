"""``segapp fit|validate|test|predict --config ...``: the LightningCLI application.

Run folder (``trainer.default_root_dir``, e.g. ``runs/quickstart``)::

    checkpoints/best.ckpt   best val/dice so far       checkpoints/last.ckpt   end of the last epoch
    logs/version_N/         config.yaml, metrics.csv, hparams.yaml, TensorBoard events

``--ckpt_path last`` resumes from ``checkpoints/last.ckpt`` of that folder.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
# TensorBoard creates logs/version_N first and the CSV logger shares it on purpose.
warnings.filterwarnings("ignore", message="Experiment logs directory .* exists and is not empty")

from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint  # noqa: E402
from lightning.pytorch.cli import LightningCLI  # noqa: E402
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger  # noqa: E402

from segapp.data import DataError, LesionDataModule  # noqa: E402
from segapp.io import ReadError  # noqa: E402
from segapp.lit import SegmentationModule  # noqa: E402
from segapp.lit.callbacks import RunSummary  # noqa: E402
from segapp.lit.run_info import build_run_info  # noqa: E402
from segapp.lit.test_report import TestReport  # noqa: E402
from segapp.nets import EncoderWeightsError  # noqa: E402


def _ckpt_dir(root: str | None) -> str:
    return str(Path(root or ".") / "checkpoints")


class SegappCLI(LightningCLI):
    """LightningCLI with a fixed run-folder layout, a best/last checkpoint and TB + CSV loggers."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
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

    def instantiate_trainer(self, **kwargs):
        cfg = self._get(self.config_init, "trainer", default={})
        if cfg.get("logger") in (True, None):
            root = cfg.get("default_root_dir") or "runs/default"
            tb = TensorBoardLogger(save_dir=root, name="logs", default_hp_metric=False)
            kwargs["logger"] = [tb, CSVLogger(save_dir=root, name="logs", version=tb.version)]
        return super().instantiate_trainer(**kwargs)

    def _record_run(self) -> None:
        """Give the module the resolved config, git commit and versions (saved in checkpoints)."""
        cfg = self.config.get(str(self.subcommand), self.config)
        text = self._parser(self.subcommand).dump(cfg, skip_none=False)
        self.model.run_info = build_run_info(text, None)

    def before_test(self) -> None:
        """``segapp test`` writes the evaluation report for the test split to ``<log_dir>/test_report/``."""
        if not any(isinstance(c, TestReport) for c in self.trainer.callbacks):
            self.trainer.callbacks.append(TestReport())

    def before_fit(self) -> None:
        self._record_run()
        self.trainer.callbacks.append(RunSummary())
        if self.trainer.loggers and not any(isinstance(c, LearningRateMonitor) for c in self.trainer.callbacks):
            self.trainer.callbacks.append(LearningRateMonitor(logging_interval="epoch"))


def cli(args: list[str] | None = None, run: bool = True) -> SegappCLI:
    """Build (and by default run) the CLI; ``args`` as on the command line."""
    return SegappCLI(
        SegmentationModule,
        LesionDataModule,
        auto_configure_optimizers=False,
        save_config_kwargs={"overwrite": True},
        args=args,
        run=run,
    )


_USER_ERRORS = (DataError, ReadError, EncoderWeightsError)


def _user_error(exc: BaseException) -> BaseException | None:
    """The user-facing error behind ``exc`` (jsonargparse wraps errors raised while instantiating)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, _USER_ERRORS):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def main(args: list[str] | None = None) -> None:
    """Console entry point; data and weights problems end with one ``error:`` line, exit code 2."""
    try:
        cli(args)
    except Exception as e:
        err = _user_error(e)
        if err is None:
            raise
        print(f"segapp: error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
