"""Parse a ``segapp fit`` command line with the CLI's own parser, without instantiating anything."""

from __future__ import annotations

import contextlib
import io
import logging
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def bare_argv() -> Iterator[None]:
    """Hide the caller's ``sys.argv`` (LightningCLI warns when it gets both ``args`` and ``sys.argv``)."""
    argv, sys.argv = sys.argv, sys.argv[:1]
    try:
        yield
    finally:
        sys.argv = argv


def parse_only(args: list[str]) -> str | None:
    """Parse ``args`` (``--config ... --key=value``) like ``segapp fit`` would.

    Returns:
        ``None`` when the parser accepts them, otherwise the parser's error message.
    """
    from segapp.cli.main import SegappCLI
    from segapp.data import LesionDataModule
    from segapp.lit import SegmentationModule

    class _ParseOnly(SegappCLI):
        def instantiate_classes(self) -> None:
            pass

    quiet = logging.getLogger("lightning.fabric.utilities.seed")
    level = quiet.level
    quiet.setLevel(logging.WARNING)  # "Seed set to N" once per parse is noise here
    try:
        with contextlib.redirect_stderr(io.StringIO()) as err, bare_argv():
            _ParseOnly(
                SegmentationModule, LesionDataModule, auto_configure_optimizers=False, args=args, run=False,
                parser_kwargs={"exit_on_error": False},
            )  # fmt: skip
    except SystemExit:
        return err.getvalue() or "the parser exited without a message"
    except Exception as e:  # jsonargparse's ArgumentError and errors from config files
        return str(e)
    finally:
        quiet.setLevel(level)
    return None
