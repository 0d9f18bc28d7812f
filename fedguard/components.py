"""Build a run's components from its spec, validating every parameter before any training.

The built set is the core type :class:`~fedguard.core.built_components.Components` (re-exported
here); this module is the registry layer that fills it.
"""

from __future__ import annotations

from typing import Any

from fedguard import registry
from fedguard.api import (
    Aggregator,
    Component,
    PayloadPolicy,
    PreAggregator,
)
from fedguard.config import ComponentSpec, RunSpec
from fedguard.core.built_components import Components
from fedguard.errors import ConfigError, IncompatibleError

__all__ = ["Components", "build_components", "check_payload_aggregation", "instantiate"]


def instantiate(kind: str, spec: ComponentSpec, where: str, **inherited: Any) -> Any:
    """Create the component ``spec`` of ``kind`` with the one builder (:func:`registry.build`);
    ``where`` names the config field in errors, ``inherited`` fills unset matching fields."""
    return registry.build(kind, spec.name, spec.params, where, **inherited)


def build_components(spec: RunSpec) -> Components:
    """Instantiate every component of ``spec`` and check cohort-dependent bounds."""
    f = spec.n_byzantine
    d = spec.defense
    a = spec.attack
    comps = Components(
        dataset=instantiate("dataset", spec.data.dataset, "data.dataset"),
        partitioner=instantiate("partitioner", spec.data.partition, "data.partition"),
        model=instantiate("model", spec.model, "model"),
        aggregator=instantiate("aggregator", d.aggregator, "defense.aggregator", n_byzantine=f),
        preaggregators=tuple(
            instantiate("preaggregator", p, f"defense.preaggregators[{i}]", n_byzantine=f)
            for i, p in enumerate(d.preaggregators)
        ),
        client_transforms=tuple(
            instantiate("client_transform", c, f"defense.client_transforms[{i}]")
            for i, c in enumerate(d.client_transforms)
        ),
        server_transforms=tuple(
            instantiate("server_transform", s, f"defense.server_transforms[{i}]")
            for i, s in enumerate(d.server_transforms)
        ),
        transport=instantiate("transport", d.transport, "defense.transport"),
        model_attack=(
            instantiate("model_attack", a.model_attack, "attack.model_attack", n_byzantine=f)
            if a.model_attack
            else None
        ),
        data_attack=(
            instantiate("data_attack", a.data_attack, "attack.data_attack")
            if a.data_attack
            else None
        ),
        free_rider=(
            instantiate(
                "free_rider",
                ComponentSpec(name=a.free_riders.name, params=a.free_riders.params),
                "attack.free_riders",
            )
            if a.free_riders
            else None
        ),
        privacy_attacks=tuple(
            instantiate("privacy_attack", p, f"attack.privacy_attacks[{i}]")
            for i, p in enumerate(a.privacy_attacks)
        ),
        client_checks=tuple(
            instantiate("client_check", c, f"defense.client_checks[{i}]")
            for i, c in enumerate(d.client_checks)
        ),
        payload=instantiate("payload", d.payload, "defense.payload") if d.payload else None,
    )
    if (a.model_attack or a.data_attack) and a.n_malicious == 0:
        raise ConfigError("attack.n_malicious must be at least 1 when an attack is configured.")
    if spec.clients.sampling == "all":
        cohort = spec.clients.n_clients
    elif spec.clients.sampling == "fixed":
        cohort = spec.clients.cohort_size or spec.clients.n_clients
    else:
        cohort = 0  # Poisson cohorts vary; rules check each round
    if cohort:
        from fedguard.core.compose import compose

        compose(comps.preaggregators, comps.aggregator).check_cohort(cohort, f)
    everything: tuple[Component | None, ...] = (
        comps.aggregator,
        *comps.preaggregators,
        *comps.client_transforms,
        *comps.server_transforms,
        comps.transport,
        comps.model_attack,
        comps.data_attack,
        comps.free_rider,
        *comps.privacy_attacks,
        *comps.client_checks,
        comps.payload,
    )
    for comp in everything:
        if comp is not None:
            comp.check_compatible(spec, comps)
    check_payload_aggregation(comps.payload, (comps.aggregator, *comps.preaggregators))
    if not comps.transport.reveals_individual_updates:
        rules: tuple[Aggregator | PreAggregator, ...] = (comps.aggregator, *comps.preaggregators)
        for rule in rules:
            if getattr(rule, "requires_individual_updates", True):
                raise IncompatibleError(
                    f"{rule.registry_name or type(rule).__name__} needs individual updates, which "
                    f"{d.transport.name!r} hides (the server only learns their sum)."
                )
    return comps


def check_payload_aggregation(
    payload: PayloadPolicy | None, rules: tuple[Aggregator | PreAggregator, ...]
) -> None:
    """A payload policy that sends part of each update is averaged per coordinate over the
    clients that sent it; a rule that needs whole individual updates (Krum, the median, …)
    cannot run on that, and would otherwise be silently replaced by the mean."""
    if payload is None:
        return
    for rule in rules:
        if getattr(rule, "requires_individual_updates", True):
            raise IncompatibleError(
                f"defense.payload {payload.registry_name or type(payload).__name__!r} sends a "
                f"part of each update, averaged per coordinate; "
                f"{rule.registry_name or type(rule).__name__!r} needs whole individual updates "
                "(use the mean)."
            )
