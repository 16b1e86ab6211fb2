import numpy as np
import pytest

from crossfed.shared.config import ConfigError, RunConfig
from crossfed.shared.data.datasets import pad_catalog, subsample_users
from crossfed.shared.data.interactions import Interactions, leave_last_out, platform_view, pool
from crossfed.shared.data.partition import PartitionSpec, assign_platforms
from crossfed.shared.evaluation.candidates import evaluation_candidates
from crossfed.shared.training.sampling import sample_negatives


def test_leave_last_out_takes_latest_as_test_and_second_latest_as_validation():
    users = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2])
    items = np.array([10, 11, 12, 13, 20, 21, 22, 30, 31])
    times = np.array([4, 1, 3, 2, 5, 5, 1, 1, 2])  # user 1 ties at time 5: file order decides
    split = leave_last_out(Interactions(users, items, times, 3, 40))
    assert split.test_items.tolist() == [10, 21, -1]
    assert split.validation_items.tolist() == [12, 20, -1]
    assert sorted(zip(split.train.users.tolist(), split.train.items.tolist())) == [
        (0, 11),
        (0, 13),
        (1, 22),
        (2, 30),
        (2, 31),
    ]
    assert sorted(split.history("test").items[split.history("test").users == 0].tolist()) == [11, 12, 13]


@pytest.mark.parametrize("scheme", ["natural", "dirichlet", "iid", "overlap"])
def test_every_scheme_covers_every_interaction_once_and_fills_every_platform(dataset, scheme):
    spec = PartitionSpec(scheme=scheme, num_platforms=3, seed=1, attribute="region", alpha=0.5, overlap_k=2)
    assignment = assign_platforms(dataset, spec)
    assert assignment.shape == dataset.users.shape
    assert set(np.unique(assignment)) == {0, 1, 2}
    platforms = [platform_view(dataset, assignment, p) for p in range(3)]
    assert sum(len(p.interactions) for p in platforms) == len(dataset.users)
    np.testing.assert_array_equal(assign_platforms(dataset, spec), assignment)  # seeded


def test_natural_keeps_attribute_groups_whole(dataset):
    assignment = assign_platforms(dataset, PartitionSpec("natural", 3, attribute="region"))
    user_platform = {}
    for user, platform in zip(dataset.users, assignment):
        assert user_platform.setdefault(user, platform) == platform
    regions = dataset.user_attributes["region"].to_numpy()
    for region in np.unique(regions):
        assert len({user_platform[u] for u in np.flatnonzero(regions == region)}) == 1


def test_overlap_spreads_a_user_over_several_platforms_as_separate_local_users(dataset):
    assignment = assign_platforms(dataset, PartitionSpec("overlap", 3, seed=0, overlap_k=2))
    per_user = [len(np.unique(assignment[dataset.users == u])) for u in range(dataset.num_users)]
    assert max(per_user) == 2
    platforms = [platform_view(dataset, assignment, p) for p in range(3)]
    assert sum(p.num_users for p in platforms) > dataset.num_users


def test_natural_with_too_few_groups_is_rejected(dataset):
    with pytest.raises(ValueError, match="fewer than"):
        assign_platforms(dataset, PartitionSpec("natural", 10, attribute="occupation"))


def test_pool_keeps_platform_users_distinct(dataset):
    assignment = assign_platforms(dataset, PartitionSpec("iid", 2, seed=0))
    platforms = [platform_view(dataset, assignment, p) for p in range(2)]
    pooled = pool(platforms)
    assert pooled.num_users == sum(p.num_users for p in platforms)
    first = platforms[0]
    np.testing.assert_array_equal(pooled.interactions.users[: len(first.interactions)], first.interactions.users)
    assert (pooled.interactions.users[len(first.interactions) :] >= first.num_users).all()


def test_negatives_avoid_known_items():
    rng = np.random.default_rng(0)
    known = Interactions(np.repeat(np.arange(3), 8), np.tile(np.arange(8), 3), np.zeros(24, np.int64), 3, 10)
    negatives = sample_negatives(np.array([0, 1, 2] * 50), 4, known, rng)
    assert set(np.unique(negatives)) <= {8, 9}


def test_evaluation_candidates_are_distinct_unseen_and_seeded():
    known = Interactions(np.repeat(np.arange(4), 10), np.tile(np.arange(10), 4), np.zeros(40, np.int64), 4, 120)
    targets = np.array([3, 4, 5, 6])
    users = np.arange(4)
    candidates = evaluation_candidates(targets, users, 99, known, seed=1)
    assert candidates[:, 0].tolist() == targets.tolist()
    for row in candidates[:, 1:]:
        assert len(set(row.tolist())) == 99 and min(row) >= 10  # distinct, none of the user's items
    np.testing.assert_array_equal(candidates, evaluation_candidates(targets, users, 99, known, seed=1))


def test_subsample_users_keeps_whole_histories(dataset):
    small = subsample_users(dataset, 10, seed=0)
    assert small.num_users == 10 and len(small.users) == 10 * 8
    assert small.user_features["region"].values.shape == (10,)


def test_pad_catalog_grows_the_catalog_and_keeps_every_interaction(dataset):
    padded = pad_catalog(dataset, 300, seed=0)
    assert padded.num_items == dataset.num_items + 300
    assert np.array_equal(padded.items, dataset.items) and np.array_equal(padded.users, dataset.users)
    assert len(set(padded.item_ids)) == padded.num_items  # padding ids never collide with real ones
    for name, feature in padded.item_features.items():
        assert len(feature.values) == padded.num_items, name
        real = {tuple(np.atleast_1d(v).tolist()) for v in dataset.item_features[name].values}
        assert all(tuple(np.atleast_1d(v).tolist()) in real for v in feature.values[dataset.num_items :]), name


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("num-platforms", 0),
        ("partition", "by-magic"),
        ("fraction-train", 1.5),
        ("learning-rate", -1),
        ("mlp-layers", "64,x"),
        ("server-optimizer", "sgd"),
    ],
)
def test_out_of_range_config_is_rejected_with_the_key_name(key, value):
    with pytest.raises(ConfigError, match=key):
        RunConfig.from_mapping({key: value})


def test_pyproject_defaults_match_the_config_object():
    """The defaults in pyproject.toml (what ``flwr run`` submits) are the ones the code declares, with their types."""
    import tomllib
    from pathlib import Path

    declared = tomllib.loads((Path(__file__).parents[3] / "pyproject.toml").read_text())["tool"]["flwr"]["app"][
        "config"
    ]
    defaults = RunConfig().to_flat()
    assert set(declared) == set(defaults)
    for key, value in declared.items():
        assert (value, type(value)) == (defaults[key], type(defaults[key])), key


def test_the_committed_configuration_reference_is_the_generated_one():
    """docs/reference/configuration.md is regenerated with ``python -m crossfed.shared.config``."""
    from pathlib import Path

    from crossfed.shared.config import reference_markdown

    committed = (Path(__file__).parents[3] / "docs" / "reference" / "configuration.md").read_text(encoding="utf-8")
    assert committed == reference_markdown()


def test_the_reference_documents_every_key_once_with_its_default():
    from crossfed.shared.config import reference_markdown
    from crossfed.shared.config.reference import toml_value

    page = reference_markdown()
    for key, default in RunConfig().to_flat().items():
        rows = [line for line in page.splitlines() if line.startswith(f"| `{key}` |")]
        assert len(rows) == 1, key
        assert rows[0].startswith(f"| `{key}` | `{toml_value(default)}` | ") and not rows[0].endswith("|  |"), key


def test_padding_is_refused_with_a_published_catalog_or_operator_data():
    for other in ({"catalog": "/srv/catalog.json"}, {"operator-data": "/srv/platform-{partition-id}"}):
        with pytest.raises(ConfigError, match="extra-items"):
            RunConfig.from_mapping({"extra-items": 10, **other})


def test_the_coordinator_builds_the_padded_catalog_the_platforms_train_on(movielens_dir):
    from crossfed.server.federation import initial_arrays
    from crossfed.shared.data.datasets import load_platforms
    from crossfed.shared.model.recommender import build_model
    from crossfed.shared.model.sharing import shared_arrays

    config = RunConfig.from_mapping(
        {"data-dir": str(movielens_dir), "extra-items": 40, "embedding-dim": 4, "mlp-layers": "8"}
    )
    platform = load_platforms(config)[0]
    local = build_model(
        config.model, platform.num_items, platform.item_features, platform.num_users, platform.user_features
    )
    coordinator = initial_arrays(config)
    assert platform.num_items == 1682 + 40
    assert {name: array.shape for name, array in coordinator.items()} == {
        name: array.shape for name, array in shared_arrays(local).items()
    }


def test_evaluation_candidates_are_the_draw_over_each_user_s_whole_complement():
    """Mapping drawn positions through the history gives the lists a catalog-sized complement per user gives."""
    rng = np.random.default_rng(4)
    num_items = 12_000  # above numpy's 10,000-item switch to its set-based draw
    users = rng.integers(0, 30, 2_000)
    items = rng.integers(0, 400, 2_000)
    known = Interactions(users, items, np.zeros(2_000, np.int64), 30, num_items)
    targets = rng.integers(0, num_items, 30)
    for count, size in ((99, num_items), (99, 1_682), (50, 460)):
        known = Interactions(users, items % size, np.zeros(2_000, np.int64), 30, size)
        draw = np.random.default_rng(9)
        expected = [
            draw.choice(np.setdiff1d(np.arange(size), known.items[known.users == user]), size=count, replace=False)
            for user in range(30)
        ]
        candidates = evaluation_candidates(targets % size, np.arange(30), count, known, seed=9)
        np.testing.assert_array_equal(candidates[:, 1:], np.stack(expected))
