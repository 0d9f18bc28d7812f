"""Identity transforms: the core's defaults for the client and server transform slots."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from fedguard.api import ClientTransform, ServerTransform, TransformContext, TransformOutput


@dataclass(frozen=True)
class IdentityClientTransform(ClientTransform):
    def __call__(self, updates: Tensor, ctx: TransformContext) -> TransformOutput:
        return TransformOutput(updates)


@dataclass(frozen=True)
class IdentityServerTransform(ServerTransform):
    def __call__(self, aggregate: Tensor, ctx: TransformContext) -> TransformOutput:
        return TransformOutput(aggregate)
