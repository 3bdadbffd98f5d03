"""Every Redis-backed object the UI uses, built in one place from one client.

When the stores take a farm id (a later change), this is the one function to change.
"""

from __future__ import annotations

from dataclasses import dataclass

from couchfarm import factory
from couchfarm.ages import ConflictAges
from couchfarm.deadletters import DeadLetters
from couchfarm.insights import InsightStore
from couchfarm.ledger import Ledger
from couchfarm.settings import Settings
from couchfarm.state import FarmState
from workers.farm import farm_state, ledger


@dataclass(frozen=True)
class Stores:
    state: FarmState  #: leases, checkpoints, the pause switch, followed databases, lag
    ledger: Ledger  #: open batches
    dead: DeadLetters
    insights: InsightStore
    ages: ConflictAges


def stores(settings: Settings) -> Stores:
    state = farm_state(settings)
    return Stores(
        state=state,
        ledger=ledger(state),
        dead=DeadLetters(state.redis),
        insights=factory.insight_store(settings, state.redis),
        ages=ConflictAges(state.redis),
    )
