"""Ray's ``NodeLabelSchedulingStrategy`` and its operators ``In``, ``NotIn``, ``Exists``,
``DoesNotExist``: where work may run, by node label.

``hard`` conditions must hold on the node; ``soft`` ones are preferred: a node matching
both is chosen while one has room, else any node matching ``hard``. The strategy is
checked when it is built and turned into the same
:class:`~actorlib.core.labels.LabelSelectorStrategy` that ``label_selector`` and
``fallback_strategy`` make (selectors tried in order), so one matcher serves both.
"""

from __future__ import annotations

from typing import Any

from actorlib.core.labels import _NAME, _VALUE, Condition, LabelSelectorStrategy, Selector
from actorlib.core.strings import plain_str


class _Operator:
    """A condition on one label; ``values`` empty for the presence operators."""

    __slots__ = ("values",)
    negated = False

    def __init__(self, *values: str) -> None:
        self.values = list(values)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(map(repr, self.values))})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Operator) and type(other) is type(self) and (
            other.values == self.values
        )

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(self.values)))

    def _condition(self, key: str) -> Condition:
        # Exact str: the condition travels in the work's spec (see plain_str).
        return (plain_str(key), self.negated, tuple(map(plain_str, self.values)))


class _ValuesOperator(_Operator):
    __slots__ = ()

    def __init__(self, *values: str) -> None:
        name = type(self).__name__
        if not values:
            raise ValueError(f"{name}() needs at least one label value, e.g. "
                             f"{name}('value1', 'value2')")
        for index, value in enumerate(values):
            if not isinstance(value, str):
                raise TypeError(f"{name}(): value {index} must be a str (e.g. "
                                f"{name}('value1', 'value2')), got {type(value).__name__} "
                                f"{value!r}")
            if not _VALUE.match(value):
                raise ValueError(f"{name}(): {value!r} is not a valid label value (up to 63 "
                                 "letters, digits, '-', '_', '.'; starting and ending with a "
                                 "letter or digit)")
        super().__init__(*values)


class In(_ValuesOperator):
    """The node's label is one of ``values``."""

    __slots__ = ()


class NotIn(_ValuesOperator):
    """The node's label is none of ``values``, or the node lacks the label."""

    __slots__ = ()
    negated = True


class Exists(_Operator):
    """The node has the label, with any value."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__()


class DoesNotExist(_Operator):
    """The node lacks the label."""

    __slots__ = ()
    negated = True

    def __init__(self) -> None:
        super().__init__()


_OPERATORS = "In(...), NotIn(...), Exists() or DoesNotExist()"


def _selector(expressions: Any, param: str) -> Selector:
    if expressions is None:
        return ()
    if not isinstance(expressions, dict):
        raise TypeError(f"NodeLabelSchedulingStrategy {param} must be a dict of label name -> "
                        f'{_OPERATORS}, like {{"zone": In("a", "b")}}, got '
                        f"{type(expressions).__name__} {expressions!r}")
    conditions = []
    for key, operator in expressions.items():
        if not isinstance(key, str):
            raise TypeError(f"NodeLabelSchedulingStrategy {param}: label names must be str, "
                            f"got {type(key).__name__} {key!r}")
        if not _NAME.match(key):
            raise ValueError(f"NodeLabelSchedulingStrategy {param}: {key!r} is not a valid "
                             "label name (letters, digits, '-', '_', '.', '/'; starting and "
                             "ending with a letter or digit)")
        if not isinstance(operator, _Operator):
            raise TypeError(f"NodeLabelSchedulingStrategy {param}[{key!r}] must be "
                            f"{_OPERATORS}, got {type(operator).__name__} {operator!r}")
        conditions.append(operator._condition(key))
    return tuple(sorted(conditions))


class NodeLabelSchedulingStrategy:
    """Run on a node whose labels satisfy every ``hard`` condition, preferring one that
    also satisfies every ``soft`` condition while such a node has room. Conditions:
    ``{"label": In("a", "b") | NotIn(...) | Exists() | DoesNotExist()}``."""

    def __init__(self, hard: dict[str, Any] | None, *, soft: dict[str, Any] | None = None
                 ) -> None:
        self.hard = hard
        self.soft = soft
        required = _selector(hard, "hard")
        preferred = _selector(soft, "soft")
        if not hard and not soft:
            raise ValueError("NodeLabelSchedulingStrategy: hard and soft cannot both be "
                             'empty; give at least one condition, like hard={"zone": In("a")}')
        selectors = (required,) if not preferred else (
            tuple(sorted(set(required) | set(preferred))), required
        )
        self._core = LabelSelectorStrategy(selectors)

    def __repr__(self) -> str:
        return f"NodeLabelSchedulingStrategy(hard={self.hard!r}, soft={self.soft!r})"
