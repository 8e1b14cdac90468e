"""``segapp fit|validate|test|predict --config ...``: the console entry of the app in :mod:`segapp.app`."""

from __future__ import annotations

from segapp.app import cli
from segapp.cli.errors import run_console


def main(args: list[str] | None = None) -> None:
    """Run the app; user errors end with one ``segapp: error:`` line and exit 2 (settings, data,
    weights, checkpoints) or 4 (an output could not be written, as segapp-predict)."""
    run_console("segapp", lambda: cli(args))


if __name__ == "__main__":
    main()
