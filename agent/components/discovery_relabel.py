"""``discovery.relabel``: rewrite target label sets with ``rule`` blocks; exports ``output`` and ``rules``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agent import relabel
from agent.components._common import RuleBlock, labels_to_target, rules, targets_to_labels
from agent.runtime.component import Component, Options
from agent.runtime.registry import register
from agent.syntax.decode import attr, block


@dataclass
class Arguments:
    targets: list[dict[str, str]] = attr(required=True)
    rule: list[RuleBlock] = block()


@dataclass
class Exports:
    output: list[dict[str, str]] = attr(default=[])
    rules: list[Any] = attr(default=[])


@register("discovery.relabel", Arguments, Exports)
class DiscoveryRelabel(Component):
    def __init__(self, opts: Options, args: Arguments) -> None:
        super().__init__(opts, args)
        self._publish(args)

    async def update(self, args: Arguments) -> None:
        self.args = args
        self._publish(args)

    def _publish(self, args: Arguments) -> None:
        rs = rules(args.rule)
        out = []
        for labels in targets_to_labels(args.targets):
            new = relabel.process(labels, rs)
            if new is not None:
                out.append(labels_to_target(new))
        self.opts.set_exports(Exports(output=out, rules=rs))
