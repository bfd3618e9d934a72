"""Converting other agents' configurations into Alloy syntax (``shoal convert``).

Kept apart from the runtime: a converter reads a foreign file and writes
Alloy text through ``agent.syntax``'s printer; it never starts a component.
"""
