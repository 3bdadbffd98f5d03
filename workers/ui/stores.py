"""Every Redis-backed object the UI uses, built in one place from the farm's stores
(``workers.farm.stores``: the farm's name, its Redis, the durable copies put back if Redis lost them)."""

from __future__ import annotations

from dataclasses import dataclass

from couchfarm import factory
from couchfarm.ages import ConflictAges
from couchfarm.deadletters import DeadLetters
from couchfarm.insights import InsightStore
from couchfarm.ledger import Ledger
from couchfarm.settings import Settings
from couchfarm.state import FarmState
from workers import farm


@dataclass(frozen=True)
class Stores:
    state: FarmState  #: leases, checkpoints, the pause switch, followed databases, lag
    ledger: Ledger  #: open batches
    dead: DeadLetters
    insights: InsightStore
    ages: ConflictAges


def stores(settings: Settings) -> Stores:
    found = farm.stores(settings)
    state, named = found.state, found.settings
    return Stores(
        state=state,
        ledger=found.ledger,
        dead=found.dead_letters,
        insights=factory.insight_store(named, state.redis),
        ages=ConflictAges(state.redis, state.farm),
    )
