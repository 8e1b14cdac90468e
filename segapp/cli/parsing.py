"""The one argparse parser shape every console script uses (help keeps the module docstring's layout)."""

from __future__ import annotations

import argparse


def console_parser(prog: str, doc: str | None, pass_through: bool = False) -> argparse.ArgumentParser:
    """An ``ArgumentParser`` for ``prog`` whose help shows ``doc`` as written.

    Args:
        prog: The console script's name.
        doc: The module docstring (its line breaks are kept in ``--help``).
        pass_through: The script forwards unknown arguments to ``segapp fit`` (``parse_known_args``):
            abbreviations are then off, so ``--out`` never swallows a ``segapp fit`` option.
    """
    return argparse.ArgumentParser(
        prog=prog, description=doc, allow_abbrev=not pass_through, formatter_class=argparse.RawDescriptionHelpFormatter
    )
