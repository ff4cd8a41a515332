"""Node labels and label selectors, in Ray's syntax.

A node carries labels (``{"zone": "a", "disk": "ssd"}``), given where it starts
(``init(labels=...)``, ``actorlib start --labels zone=a``). Work may ask for nodes by
label with ``label_selector``: ``{"zone": "a"}`` (equal), ``{"zone": "!a"}`` (not equal,
or no such label), ``{"zone": "in(a,b)"}`` (one of), ``{"zone": "!in(a,b)"}`` (none of,
or no such label); every key must match. ``fallback_strategy`` lists further selectors,
tried in order. ``NodeLabelSchedulingStrategy`` adds conditions on a label's presence
(``Exists``, ``DoesNotExist``), which are conditions with no values here. The parsed form
is hashable, so it can be part of a scheduling shape.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from actorlib.core.strings import plain_str

# One condition: (key, negated, values): the label is one of ``values`` (or, negated,
# is none of them or absent). No values: the label is present (or, negated, absent).
Condition = tuple[str, bool, tuple[str, ...]]
Selector = tuple[Condition, ...]

_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._/-]{0,251}[A-Za-z0-9])?$")
_VALUE = re.compile(r"^([A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)?$")
_IN = re.compile(r"^(!?)in\((.*)\)$")


@dataclass(frozen=True, slots=True)
class LabelSelectorStrategy:
    """Run on a node whose labels match ``selectors[0]``; if none matching has room now,
    one matching ``selectors[1]``, and so on (``fallback_strategy``). ``spread``: among
    the matching nodes, spread rather than fill the least loaded."""

    selectors: tuple[Selector, ...]
    spread: bool = False


def validate_labels(labels: Any, what: str = "labels") -> dict[str, str]:
    """Node labels: a dict of label name -> value, both strings in Kubernetes' syntax."""
    if not isinstance(labels, dict):
        raise TypeError(f"{what} must be a dict of label name (str) -> value (str), got "
                        f"{type(labels).__name__} {labels!r}")
    for key, value in labels.items():
        if not isinstance(key, str) or not _NAME.match(key):
            raise ValueError(f"{what}: {key!r} is not a valid label name (letters, digits, "
                             "'-', '_', '.', '/'; starting and ending with a letter or digit)")
        if not isinstance(value, str) or not _VALUE.match(value):
            raise ValueError(f"{what}[{key!r}]: {value!r} is not a valid label value (up to 63 "
                             "letters, digits, '-', '_', '.'; starting and ending with a "
                             "letter or digit)")
    return {plain_str(k): plain_str(v) for k, v in labels.items()}  # they travel


def parse_labels_arg(text: str) -> dict[str, str]:
    """``"zone=a,disk=ssd"`` (the command line's ``--labels``) as a dict."""
    labels: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"--labels takes name=value pairs separated by commas, like "
                             f"zone=a,disk=ssd; got {part!r}")
        labels[key.strip()] = value.strip()
    return validate_labels(labels, "--labels")


def parse_selector(selector: Any, what: str = "label_selector") -> Selector:
    """Ray's selector dict as conditions; a clear error naming ``what`` if malformed."""
    if not isinstance(selector, dict) or not all(isinstance(k, str) for k in selector):
        raise TypeError(f'{what} must be a dict of label name -> condition, like {{"zone": '
                        f'"a"}}, got {type(selector).__name__} {selector!r}')
    conditions = []
    for key, text in sorted(selector.items()):
        if not _NAME.match(key):
            raise ValueError(f"{what}: {key!r} is not a valid label name")
        if not isinstance(text, str):
            raise TypeError(f"{what}[{key!r}] must be a str: 'value', '!value', 'in(a,b)' or "
                            f"'!in(a,b)', got {type(text).__name__} {text!r}")
        found = _IN.match(text)
        if found:
            negated = found.group(1) == "!"
            values = tuple(v.strip() for v in found.group(2).split(","))
        else:
            negated = text.startswith("!")
            values = (text[1:] if negated else text,)
        if not values or not all(v and _VALUE.match(v) for v in values):
            raise ValueError(f"{what}[{key!r}]: {text!r} is not a condition: write 'value', "
                             "'!value', 'in(a,b)' or '!in(a,b)' with valid label values")
        # Exact str: the selector travels in the work's spec (see plain_str).
        conditions.append((plain_str(key), negated, tuple(map(plain_str, values))))
    return tuple(conditions)


def matches(labels: dict[str, str], selector: Selector) -> bool:
    return all(
        ((labels.get(key) in values) if values else (key in labels)) != negated
        for key, negated, values in selector
    )


def describe_selector(selector: Selector) -> str:
    parts = []
    for key, negated, values in selector:
        if not values:
            parts.append(f"{key}: {'does not exist' if negated else 'exists'}")
            continue
        body = values[0] if len(values) == 1 else f"in({','.join(values)})"
        parts.append(f"{key}={'!' if negated else ''}{body}")
    return "{" + ", ".join(parts) + "}"
