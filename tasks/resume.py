"""Finishing what a killed nightly left: a candidate registered but never decided on, a decision
recorded but never written up, batches accepted but never trained on.

A nightly killed after registering its candidate (during the promotion, say) leaves the
version ``registered`` with no decision; one killed after the registry recorded the promotion
leaves the model card and CHANGELOG behind the registry; one killed during the export leaves
its accepted batches in no version (the export's version is marked failed by the doctor). The
next nightly calls :func:`finish_interrupted` and :func:`untrained_batches` under the model's
retrain lock, so no run that could still be finishing its own work is running.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from core.settings import Settings
from registry.lifecycle import PRODUCTION
from registry.models import ModelVersionRecord, VersionStatus
from registry.store import RegistryStore
from tasks.comparison import Metrics
from tasks.decide import decide
from tasks.export import version_dir
from tasks.model_card import document_version
from tasks.release import DecisionAnnouncer, act_on_decision
from tasks.steps import step

NO_TRAINING = frozenset({VersionStatus.REGISTERING, VersionStatus.FAILED})
"""Statuses of versions whose training never completed: their batches count as untrained."""


def undecided_candidate(store: RegistryStore, model: str) -> ModelVersionRecord | None:
    """The model's newest version when it is ``registered`` with no decision recorded: the
    candidate of a run killed between registration and carrying out its decision."""
    newest = store.newest_version(model, excluding={VersionStatus.FAILED})
    if newest is None:
        return None
    return newest if newest.status is VersionStatus.REGISTERED and newest.decision is None else None


def finish_interrupted(
    store: RegistryStore,
    settings: Settings,
    model: str,
    flow_run_id: str | None,
    announce: DecisionAnnouncer | None = None,
) -> str | None:
    """Carry out the decision a killed run did not, and write up what the registry holds.

    The undecided candidate (:func:`undecided_candidate`) is decided exactly as its own run
    would have: its recorded metrics against the baseline metrics recorded with it, under
    today's policy, carried out by ``tasks.release.act_on_decision`` (an automatic promotion
    still requires production to be that baseline, else a human is asked; a candidate recorded
    before per-example predictions were kept cannot be tested against its baseline, and a human
    is asked too). Then the model card of the production version, when it disagrees with the
    registry, is rewritten with its CHANGELOG line (:func:`stale_cards`).

    Returns:
        One line per thing finished, or None when nothing was left.

    Raises:
        Whatever ``act_on_decision`` raises; the registry is unchanged then.
    """
    done = []
    candidate = undecided_candidate(store, model)
    if candidate is not None:
        baseline = Metrics.model_validate(candidate.baseline_metrics) if candidate.baseline_metrics else None
        decision = decide(Metrics.model_validate(candidate.metrics), baseline, settings.model(model).policy)
        summary = act_on_decision(store, settings, candidate, decision, flow_run_id, announce)
        done.append(f"finished the decision on version {candidate.version}, left by an interrupted run: {summary}")
    for version in stale_cards(store, settings.model_store, model):
        document_version(store, settings.model_store, model, version, actor="policy")
        done.append(f"wrote the model card and CHANGELOG line of version {version}, left behind by an interrupted run")
    return "\n".join(done) or None


def stale_cards(store: RegistryStore, model_store: Path, model: str) -> list[int]:
    """The production version, when its model card is missing or names another status: a
    promotion recorded by a run killed before it wrote the card and the CHANGELOG line."""
    production = store.get_alias(model, PRODUCTION)
    if production is None:
        return []
    card = version_dir(model_store, model, production.version) / "assets.extra" / "model_card.json"
    try:
        status = json.loads(card.read_text()).get("status")
    except (OSError, ValueError):
        status = None
    return [] if status == production.status.value else [production.version]


def untrained_batches(store: RegistryStore, model: str, accepted: Sequence[Path]) -> list[Path]:
    """The ``accepted`` batch files that no version trained on (versions still registering or
    failed do not count): the work of a run killed after accepting them."""
    trained = {name for v in store.list_versions(model) if v.status not in NO_TRAINING for name in v.batches}
    return [path for path in accepted if path.name not in trained]


finish_interrupted_task = step(finish_interrupted, name="finish-interrupted")
