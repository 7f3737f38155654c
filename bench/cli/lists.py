"""List flags that read the same in every subcommand: `--methods a,b`, `--methods a b` and `--methods a,b c`.

    p.add_argument("--methods", **list_flag(metavar="NAME"))
    p.add_argument("--seeds", **list_flag(int, default=[0], metavar="N"))
"""

from __future__ import annotations

import argparse
from typing import Any, Callable, Sequence


def split_items(values: str | Sequence[str]) -> list[str]:
    """'a,b' / ['a', 'b'] / ['a,b', 'c'] -> ['a', 'b', 'c'] (empty items dropped, order kept)."""
    parts = [values] if isinstance(values, str) else list(values)
    return [item.strip() for part in parts for item in str(part).split(",") if item.strip()]


class ListAction(argparse.Action):
    """`nargs="+"` whose items may also be comma-separated; each item converted by `item_type`."""

    def __init__(self, option_strings, dest, item_type: Callable[[str], Any] = str, item_choices=None, **kwargs):
        kwargs.setdefault("nargs", "+")
        super().__init__(option_strings, dest, **kwargs)
        self.item_type = item_type
        self.item_choices = tuple(item_choices) if item_choices else None

    def __call__(self, parser, namespace, values, option_string=None):
        items = split_items(values)
        if not items:
            parser.error(f"{option_string} needs at least one value")
        out = []
        for item in items:
            if self.item_choices and item not in self.item_choices:
                parser.error(f"argument {option_string}: invalid choice: {item!r} (choose from "
                             f"{', '.join(map(str, self.item_choices))})")
            try:
                out.append(self.item_type(item))
            except (TypeError, ValueError):
                name = getattr(self.item_type, "__name__", "value")
                parser.error(f"argument {option_string}: invalid {name} value: {item!r}")
        setattr(namespace, self.dest, out)


def list_flag(item_type: Callable[[str], Any] = str, *, choices=None, **kwargs) -> dict[str, Any]:
    """Keyword arguments for `add_argument` of a list flag (`a,b` and `a b` both accepted)."""
    return {"action": ListAction, "item_type": item_type, "item_choices": choices, **kwargs}
