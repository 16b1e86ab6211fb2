"""Every name that travels between coordinator and platforms, and what a platform may report.

Coordinator and platforms are separate programs, often of separate organisations; they
agree on the wire only through these names. Both sides import them from here (as
Flower's own ``secaggplus_constants`` does for SecAgg+), so a renamed key is renamed for
both, and the platform's allowlist and the coordinator's reader cannot drift apart.
"""

from __future__ import annotations

from flwr.app import MessageType

from crossfed.shared.evaluation.ranking import PROTOCOLS

# Records of a message. The coordinator writes ARRAYS (global shared parameters) and CONFIG
# (round and stage) into every request; a platform writes ARRAYS (its trained shared
# parameters, training replies only) and METRICS (the allowlisted scalars below) into its reply.
ARRAYS_RECORD = "arrays"
METRICS_RECORD = "metrics"
CONFIG_RECORD = "config"

#: Flower's legacy (FitIns) record that carries the global parameters of a SecAgg+ training
#: request; Flower's compat layer writes it, the platform reads it to tell SecAgg+ requests apart.
LEGACY_PARAMETERS_RECORD = "fitins.parameters"

# Keys of a request's CONFIG record (SecAgg+: of the legacy fit config), written by the
# coordinator and read by the platform. They say which round and stage it is, never a
# setting: every setting a platform uses comes from its own configuration.
SERVER_ROUND = "server-round"
STAGE = "stage"
#: Early stopping's best round so far. With a validation request: the platform keeps the user tower of that
#: round and of this one (either may be selected). With the test request: the selected round, whose user
#: tower the platform tests with (the coordinator sends that round's shared parameters).
BEST_ROUND = "best-round"
#: SecAgg+ only: the shared parameters' names, comma-separated, in the order of the legacy parameter list.
SHARED_NAMES = "shared-names"

# Values of STAGE: which held-out items an evaluation request ranks, or the start-up request.
STAGE_PREPARE = "prepare"
STAGE_VALIDATION = "validation"
STAGE_TEST = "test"

#: The start-up request's name: the platform registers its handler under it
#: (``@app.query(PREPARE_QUERY)``), and Flower routes messages of type PREPARE_MESSAGE_TYPE to it.
PREPARE_QUERY = "prepare"
PREPARE_MESSAGE_TYPE = f"{MessageType.QUERY}.{PREPARE_QUERY}"

#: ``user-dp-mechanism = gram-subspace``: the one request for each platform's noised Gram release, and the
#: request that hands each platform the federation's item basis to serve and test with.
GRAM_RELEASE_QUERY = "gram_release"
GRAM_RELEASE_MESSAGE_TYPE = f"{MessageType.QUERY}.{GRAM_RELEASE_QUERY}"
SUBSPACE_TEST_QUERY = "subspace_test"
SUBSPACE_TEST_MESSAGE_TYPE = f"{MessageType.QUERY}.{SUBSPACE_TEST_QUERY}"
#: The one array of a release reply (the diagonal over sqrt(2) and the strict upper triangle of the
#: platform's noised item Gram matrix); under SecAgg+ also the one name of the legacy parameter list.
RELEASE_ARRAY = "gram-release"
#: The one array of a subspace test request: the orthonormal item basis (items x k).
BASIS_ARRAY = "item-basis"

# Keys of a reply's METRICS record, written by the platform (through ``crossfed.client.outbox``)
# and read by the coordinator (through ``crossfed.shared.protocol.replies``).
#: The platform's index (its partition): a non-negative integer; orders replies for aggregation.
PLATFORM = "platform"
#: The aggregation weight (positives trained on; 1 for every platform under DP).
NUM_EXAMPLES = "num-examples"
#: 1 when the platform refused to train because the round would exceed its privacy budget.
DECLINED = "declined"
#: Privacy spent so far, its value without amplification, the noise multiplier and delta (DP only).
EPSILON = "epsilon"
EPSILON_ALONE = "epsilon-alone"
NOISE_MULTIPLIER = "noise-multiplier"
DELTA = "delta"
#: Training figures of one round (without DP only).
TRAIN_LOSS = "train-loss"
TRAIN_SECONDS = "train-seconds"
PAIRS_PER_SECOND = "pairs-per-second"
#: Users an evaluation ranked items for (without DP only).
NUM_USERS = "num-users"
#: Prefix of the test metrics of the global model, next to those of the model the platform serves.
GLOBAL_PREFIX = "global-"
#: Ranking measures reported per evaluation protocol (``sampled-hr``, ``global-full-ndcg``, ...).
RANKING_MEASURES = ("hr", "ndcg")


def ranking_metric(protocol: str, measure: str, prefix: str = "") -> str:
    """The metric key of one ranking measure under one protocol, e.g. ``global-sampled-hr``."""
    return f"{prefix}{protocol}-{measure}"


def ranking_metrics(prefix: str = "") -> frozenset[str]:
    """Every ranking metric key under ``prefix``: each measure under each protocol."""
    return frozenset(
        ranking_metric(protocol, measure, prefix) for protocol in PROTOCOLS for measure in RANKING_MEASURES
    )


#: Every ranking metric an evaluation reply may hold: the served model's, and the global model's.
RANKING_METRICS = ranking_metrics() | ranking_metrics(GLOBAL_PREFIX)

#: What a platform may report under DP: its index, equal weights, and its privacy status -
#: values derived from public settings only. ``crossfed.client.outbox`` refuses anything else.
PRIVATE_METRICS = frozenset({PLATFORM, NUM_EXAMPLES, DECLINED, EPSILON, EPSILON_ALONE, NOISE_MULTIPLIER, DELTA})
#: Without DP: also platform-level training figures and evaluation means.
PLAIN_METRICS = PRIVATE_METRICS | {TRAIN_LOSS, TRAIN_SECONDS, PAIRS_PER_SECOND, NUM_USERS} | RANKING_METRICS
#: Privacy figures that may be infinite: an unbounded spend is a true report, not a broken one.
MAY_BE_INFINITE = frozenset({EPSILON, EPSILON_ALONE})
