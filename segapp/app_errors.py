"""The app's own refusals: jsonargparse's nested parser errors as one line (the setting, what was
expected, what came), and a training run into a folder that already holds a trained model."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from segapp.errors import SettingError, close_matches

_KEY = re.compile(r'Parser key "([^"]+)"')
# the value given ends at the line's end or where a nested "Got value:" repeats it
_LITERAL = re.compile(r"Expected a typing\.Literal\[(.*?)\]\. Got value: (.*?)(?:\. Got value:|$)", re.M)
_TYPE = re.compile(r"Expected a <class '([\w.]+)'>\. Got value: (.*?)(?:\. Got value:|$)", re.M)


def _key(message: str) -> str:
    keys = _KEY.findall(message)
    if not keys:
        return ""
    return keys[0] + "".join(f".init_args.{k}" for k in keys[1:])


def one_line_parser_error(message: str) -> str:
    """``model.net.init_args.norm: expected one of batch, ..., got 'btach'; did you mean batch?; fix: ...``.

    Falls back to the message with its whitespace collapsed when it has no known shape.
    """
    key = _key(message)
    prefix = f"{key}: " if key else ""
    fix = "; fix: `segapp fit --help` lists every option and its type"
    lit = _LITERAL.search(message)
    if lit:
        try:
            choices = [str(c) for c in ast.literal_eval(f"[{lit.group(1)}]")]
        except (ValueError, SyntaxError):
            choices = [lit.group(1)]
        got = lit.group(2).strip()
        near = close_matches(got, choices)
        hint = f"; did you mean {', '.join(near)}?" if near else ""
        return f"{prefix}expected one of {', '.join(choices)}, got {got!r}{hint}"
    typ = _TYPE.search(message)
    if typ:
        return f"{prefix}expected a value of type {typ.group(1)}, got {typ.group(2).strip()!r}{fix}"
    text = " ".join(message.split())
    if key and text.startswith(f'Parser key "{key}":'):
        text = text[len(f'Parser key "{key}":') :].strip()
    return f"{prefix}{text}"


def refuse_trained_folder(root: str | Path | None, planned: bool = False) -> None:
    """Refuse a new training run into a folder whose checkpoints it would write over.

    ``segapp fit`` (planned or not) writes ``checkpoints/best.ckpt`` and ``last.ckpt``: started
    again in the same ``trainer.default_root_dir`` it replaced a trained model with whatever the
    new run reached, Lightning's one-line warning the only trace. Resuming (``--ckpt_path``) is
    not a new run and is not checked here.

    Args:
        root: ``trainer.default_root_dir`` (``None``: the working folder, where the app's link
            ``checkpoint.dirpath`` = ``root/checkpoints`` then puts them).
        planned: A ``--budget`` run (it writes its plan there, too): the message says so.

    Raises:
        SettingError: The folder holds ``*.ckpt`` files, naming them and a free folder.
    """
    folder = Path(root or ".")
    ckpts = sorted((folder / "checkpoints").glob("*.ckpt"))
    if not ckpts:
        return
    free = next(p for n in range(2, 10_000) if not (p := folder.parent / f"{folder.name}_{n}").exists())
    what = "a planned run" if planned else "a new run"
    resume = "" if planned else ", resume it with --ckpt_path last"
    raise SettingError(
        f"trainer.default_root_dir: expected a new run folder for {what}, got {folder}, which holds a trained "
        f"model ({', '.join(p.name for p in ckpts[:3])}) that this run would write over; fix: "
        f"--trainer.default_root_dir {free}{resume}, or move that folder away"
    )
