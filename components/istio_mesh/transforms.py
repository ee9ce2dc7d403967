"""One resource transform per object, however many a component and its ancestors want.

Every transform in a resource's ancestry is a separate callback from the engine to this program,
each carrying the object's full properties there and back (an Istio CRD is ~100 KB), and the engine
applies all of them to every object a Helm chart renders. Profiled on the 2-cluster lab (no-op
preview, py-spy): transform callbacks were ~30% of the program's CPU, and most objects went through
two or three of them (the create guard, the webhook drift rule, the CRD delete rule) although at most
one changes any given kind. ``single_transform`` folds a component's own transforms and the ones it
inherits into one callback, run in the engine's order (the nearest first).
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable

import pulumi

#: A synchronous resource transform (all of this project's are).
Transform = Callable[[pulumi.ResourceTransformArgs], pulumi.ResourceTransformResult | None]


def compose(*transforms: Transform) -> Transform:
    """A transform applying each of ``transforms`` in turn, each to the previous one's result."""

    def transform(args: pulumi.ResourceTransformArgs) -> pulumi.ResourceTransformResult | None:
        current = args
        changed = False
        for each in transforms:
            result = each(current)
            if inspect.isawaitable(result):
                raise TypeError(f"compose() takes synchronous transforms; {each!r} returned an awaitable")
            if result is None:
                continue
            changed = True
            current = pulumi.ResourceTransformArgs(
                custom=current.custom, type_=current.type_, name=current.name, props=result.props, opts=result.opts
            )
        return pulumi.ResourceTransformResult(props=current.props, opts=current.opts) if changed else None

    return transform


def single_transform(opts: pulumi.ResourceOptions | None, *own: Transform) -> pulumi.ResourceOptions:
    """A copy of ``opts`` whose transforms are one: ``own`` (applied first) then the ones ``opts`` has.

    For a component's ``super().__init__``: its children then cost one engine callback each. The
    component must register no other transforms below itself for that to hold.
    """
    result = copy.copy(opts) if opts is not None else pulumi.ResourceOptions()
    inherited: list[Transform] = list(result.transforms or [])  # type: ignore[arg-type]
    chain = [*own, *inherited]
    result.transforms = [chain[0] if len(chain) == 1 else compose(*chain)] if chain else None
    return result
