"""costpolicy: the pure cost model and decision engine behind crossover.

Nothing here talks to Kubernetes, Prometheus or the network: every input arrives as a value and time is
passed in, so the operator, the router, the simulator and the CLI all run the same arithmetic. Money is
`decimal.Decimal` throughout; a month is 730 hours.
"""

from costpolicy.decide import decide
from costpolicy.decision import Action, Decision, Reason, Recommendation, Stage, StageName
from costpolicy.snapshot import Demand, ReplicaState, Snapshot
from costpolicy.spec import CostSpec, PolicyMode

__all__ = [
    "Action",
    "CostSpec",
    "Decision",
    "Demand",
    "PolicyMode",
    "Reason",
    "Recommendation",
    "ReplicaState",
    "Snapshot",
    "Stage",
    "StageName",
    "decide",
]
