"""Failpoints: named places where the farm fails on purpose, to rehearse a failure for real.

One environment variable, ``NASFARM_FAILPOINTS``, read once per process (``reload()`` reads it
again, for tests), names the points to arm::

    NASFARM_FAILPOINTS="train.start=raise:cell=<hash>;checkpoint.write=exit:after=3"

    spec    := rule (";" rule)*
    rule    := point "=" action [":" option ("," option)*]
    action  := "raise"   raise InjectedFault (a TrainingError; retried like a crash unless retryable=no)
             | "exit"    os._exit(137): the process dies at once, as under kill -9
    option  := key "=" value
               a context key of the point: fire only where it equals value ("a|b": either)
               after=N      let the first N matching hits pass, then fire
               times=N      fire at most N times (per process)
               retryable=yes|no   (raise only) the InjectedFault's verdict, default yes

The points and the context each one passes (a filter on any other key is an error):

    train.start       cell, epochs, repeat   before a job trains (once per job of a fused group)
    train.step        cell, step             before each training update (step = updates done)
    checkpoint.write  cell, repeat, step, complete   before each checkpoint file is written

Off (the variable unset or empty) a point costs one module-level boolean test: callers on a hot
path write ``if failpoints.ENABLED: failpoints.hit(...)``, and :func:`hit` itself returns at once.
A malformed value raises :class:`FailpointSpecError` naming the variable, when this module is
imported (so a worker fails before training, not in the middle of it). Counters are per process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from farm.train_errors import InjectedFault

ENV = "NASFARM_FAILPOINTS"
POINTS: dict[str, tuple[str, ...]] = {
    "train.start": ("cell", "epochs", "repeat"),
    "train.step": ("cell", "step"),
    "checkpoint.write": ("cell", "repeat", "step", "complete"),
}
ACTIONS = ("raise", "exit")
EXIT_STATUS = 137  # what a shell reports for a process killed by SIGKILL
_COUNTS = ("after", "times")


class FailpointSpecError(ValueError):
    """``NASFARM_FAILPOINTS`` does not parse; the message names the variable and the bad part."""


@dataclass
class Rule:
    point: str
    action: str
    filters: dict[str, frozenset[str]] = field(default_factory=dict)
    after: int = 0
    times: int | None = None
    retryable: bool = True
    matched: int = 0  # matching hits so far (this process)

    def fires(self, context: dict[str, object]) -> bool:
        if any(str(context.get(key)) not in allowed for key, allowed in self.filters.items()):
            return False
        self.matched += 1
        fired_before = self.matched - 1 - self.after
        return fired_before >= 0 and (self.times is None or fired_before < self.times)


def _bad(what: str) -> FailpointSpecError:
    return FailpointSpecError(f"{ENV}: {what} (grammar: point=action[:key=value,...][;...])")


def _count(key: str, value: str) -> int:
    if not value.isdigit():
        raise _bad(f"{key}={value!r} is not a non-negative whole number")
    return int(value)


def parse(spec: str) -> dict[str, list[Rule]]:
    """The armed rules of a ``NASFARM_FAILPOINTS`` value, by point."""
    rules: dict[str, list[Rule]] = {}
    for text in filter(None, (part.strip() for part in spec.split(";"))):
        point, sep, rest = text.partition("=")
        point = point.strip()
        if not sep or point not in POINTS:
            raise _bad(f"{text!r}: unknown point {point!r} (known: {', '.join(POINTS)})")
        action, _, options = rest.partition(":")
        rule = Rule(point, action.strip())
        if rule.action not in ACTIONS:
            raise _bad(f"{text!r}: unknown action {rule.action!r} (known: {', '.join(ACTIONS)})")
        for option in filter(None, (o.strip() for o in options.split(","))):
            key, sep, value = (s.strip() for s in option.partition("="))
            if not sep or not value:
                raise _bad(f"{text!r}: option {option!r} is not key=value")
            if key in _COUNTS:
                setattr(rule, key, _count(key, value))
            elif key == "retryable" and rule.action == "raise" and value in ("yes", "no"):
                rule.retryable = value == "yes"
            elif key in POINTS[point]:
                rule.filters[key] = frozenset(value.split("|"))
            else:
                known = ", ".join((*POINTS[point], *_COUNTS, "retryable"))
                raise _bad(f"{text!r}: {point} has no option {option!r} (options: {known})")
        rules.setdefault(point, []).append(rule)
    return rules


_RULES: dict[str, list[Rule]] = {}
ENABLED = False


def reload() -> None:
    """Read ``NASFARM_FAILPOINTS`` again (tests; the process reads it once at import)."""
    global _RULES, ENABLED
    _RULES = parse(os.environ.get(ENV, ""))
    ENABLED = bool(_RULES)


def hit(point: str, **context: object) -> None:
    """Pass failpoint ``point`` with its context: nothing happens unless a rule fires."""
    if not ENABLED:
        return
    for rule in _RULES.get(point, ()):
        if rule.fires(context):
            if rule.action == "exit":
                os._exit(EXIT_STATUS)
            described = ", ".join(f"{k}={v}" for k, v in context.items())
            raise InjectedFault(f"injected fault at failpoint {point} ({described}; {ENV})",
                                retryable=rule.retryable)


reload()
