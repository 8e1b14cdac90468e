"""Turn jsonargparse's nested parser errors into one line: the setting, what was expected, what came."""

from __future__ import annotations

import ast
import re

from segapp.errors import close_matches

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
