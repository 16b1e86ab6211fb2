"""The operator workflow on data in the generic format: MovieLens-100K exported to CSV and Parquet.

One platform is trained alone on the export (the files a federation leaves behind: the
platform's state and the coordinator's global model); 150 users are held out of the files
entirely and come back as new users through fold-in.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from crossfed.client.serving.cold_start import find_segment, popularity_scores
from crossfed.client.serving.service import RecommendationService, ServingError
from crossfed.shared.cli import main as crossfed
from crossfed.shared.data.catalog import load_catalog
from crossfed.shared.data.platform_files import OperatorData, load_operator_data
from crossfed.shared.storage.checkpoint import FinalModel
from crossfed.shared.storage.foldins import FoldIns
from crossfed.shared.storage.platform_state import PlatformState
from crossfed.shared.storage.served_copy import PrivateCopy
from crossfed.simulations.operator_demo import ExportedPlatform, demo_config, export_movielens, train_platform

#: Training the platform once for the module takes ~20 s; the whole module ~45 s on 2 cores.
pytestmark = pytest.mark.slow

HELD_OUT = 150
EPOCHS = 2


@pytest.fixture(scope="module")
def setup(movielens_dir: Path, tmp_path_factory) -> dict:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("operator")
    csv = export_movielens(movielens_dir, root / "csv", suffix=".csv", hold_out_users=HELD_OUT, seed=0)
    parquet = export_movielens(movielens_dir, root / "parquet", suffix=".parquet", hold_out_users=HELD_OUT, seed=0)
    catalog = load_catalog(csv.catalog)
    platform = load_operator_data(csv.interactions, catalog, users=csv.users)
    config = demo_config(catalog)
    train_platform(platform, config, root / "run", root / "state", EPOCHS)
    return {"root": root, "csv": csv, "parquet": parquet, "platform": platform, "catalog": catalog}


def cli_platform_args(exported: ExportedPlatform, root: Path, state: Path | None = None) -> list[str]:
    return [
        "--interactions",
        str(exported.interactions),
        "--user-features",
        str(exported.users),
        "--catalog",
        str(exported.catalog),
        "--global-model",
        str(root / "run"),
        "--state-dir",
        str(state or root / "state"),
    ]


def service(setup: dict, **overrides) -> RecommendationService:
    return RecommendationService.open(setup["platform"], setup["root"] / "run", setup["root"] / "state", overrides)


# ------------------------------------------------------------------------------------ validate


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_validate_reports_rows_users_items_and_missing_values(setup, fmt, capsys):
    exported: ExportedPlatform = setup[fmt]
    code = crossfed(
        [
            "validate",
            "--interactions",
            str(exported.interactions),
            "--user-features",
            str(exported.users),
            "--catalog",
            str(exported.catalog),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    report = setup["platform"].report
    assert f"rows: {report.rows_read} read, 0 exact duplicates dropped, 0 with unknown items dropped" in out
    assert f"users: {943 - HELD_OUT} with interactions" in out
    assert "of 1682 in the catalog" in out and "unknown items: 0" in out
    assert "items.year: 1" in out  # item 267 has no date
    assert "ok: the files can be used" in out


def test_items_outside_the_catalog_are_counted_and_dropped_never_mapped(setup, tmp_path, capsys):
    inter = pd.read_csv(setup["csv"].interactions, dtype=str)
    extra = pd.DataFrame(
        {
            "user_id": ["1", "1", "2"],
            "item_id": ["N1", "N2", "N1"],
            "timestamp": ["1", "2", "3"],
            "weight": ["1", "1", "1"],
        }
    )
    path = tmp_path / "with_unknown.csv"
    pd.concat([inter, extra]).to_csv(path, index=False)
    args = ["--interactions", str(path), "--catalog", str(setup["csv"].catalog)]
    assert crossfed(["validate", *args]) == 0
    out = capsys.readouterr().out
    assert "unknown items: 2 (in 3 rows; e.g. 'N1', 'N2')" in out
    assert f"{len(inter)} kept" in out
    assert crossfed(["validate", *args, "--strict"]) == 1
    assert "2 items are not in the catalog" in capsys.readouterr().err


def test_a_catalog_of_another_version_is_refused(setup, capsys):
    args = [
        "--interactions",
        str(setup["csv"].interactions),
        "--catalog",
        str(setup["csv"].catalog),
        "--catalog-version",
        "ml-100k-2",
    ]
    assert crossfed(["validate", *args]) == 1
    assert "catalog version 'ml-100k-1', but this run uses 'ml-100k-2'" in capsys.readouterr().err


# ----------------------------------------------------------------------------------- recommend


def test_parquet_export_gives_the_same_platform_as_csv(setup):
    exported = setup["parquet"]
    platform = load_operator_data(exported.interactions, setup["catalog"], users=exported.users)
    csv_platform: OperatorData = setup["platform"]
    np.testing.assert_array_equal(platform.user_ids, csv_platform.user_ids)
    np.testing.assert_array_equal(platform.data.interactions.items, csv_platform.data.interactions.items)
    served = RecommendationService.open(platform, setup["root"] / "run", setup["root"] / "state")
    assert [r.item_id for r in served.recommend("1")] == [r.item_id for r in service(setup).recommend("1")]


def test_recommend_never_returns_a_seen_item_and_explains_with_own_items_only(setup):
    served = service(setup)
    platform: OperatorData = setup["platform"]
    users = platform.user_ids[::7]
    catalog_genres = platform.catalog.items.set_index("item_id")["genres"].fillna("")
    for user in users:
        seen = set(served.history(user))
        recommendations = served.recommend(user, k=20)
        assert len(recommendations) == 20
        scores = [r.score for r in recommendations]
        assert scores == sorted(scores, reverse=True)
        own_genres = {g for item in seen for g in catalog_genres[item].split("|") if g}
        for r in recommendations:
            assert r.item_id not in seen
            assert r.explanation.basis == "history"
            assert r.explanation.similar_items and {i for i, _ in r.explanation.similar_items} <= seen
            for genre in r.explanation.matching_features.get("genres", ()):
                assert genre in catalog_genres[r.item_id].split("|") and genre in own_genres


def test_a_user_who_has_seen_almost_everything_gets_only_the_rest(setup):
    served = service(setup)
    everything_but_two = np.arange(served.scorer.num_items - 2)
    served.fold_in({"greedy": everything_but_two}, save=False)
    recommendations = served.recommend("greedy", k=10)
    assert [r.item_id for r in recommendations] != []
    assert {r.item_id for r in recommendations} == set(served.item_ids[-2:])


def test_recommend_cli_one_user_and_everyone_to_a_file(setup, tmp_path, capsys):
    args = cli_platform_args(setup["csv"], setup["root"])
    assert crossfed(["recommend", *args, "--user", "1", "--user", "2", "-k", "5"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["user_id"], r["rank"]) for r in rows] == [(u, k) for u in ("1", "2") for k in range(1, 6)]
    assert crossfed(["recommend", *args, "--all", "-k", "3", "--out", str(tmp_path / "recs.csv")]) == 0
    written = pd.read_csv(tmp_path / "recs.csv", dtype=str)
    platform: OperatorData = setup["platform"]
    assert len(written) == 3 * len(platform.user_ids)
    seen = set(zip(platform.tables.interactions["user_id"], platform.tables.interactions["item_id"]))
    assert not any(pair in seen for pair in zip(written["user_id"], written["item_id"]))


def test_recommend_cli_on_parquet_files(setup, capsys):
    args = cli_platform_args(setup["parquet"], setup["root"])
    assert crossfed(["recommend", *args, "--user", "1", "-k", "3"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["item_id"] for r in rows] == [r.item_id for r in service(setup).recommend("1", 3)]


def test_serving_refuses_a_catalog_of_another_version_than_the_runs(setup):
    with pytest.raises(ServingError, match="catalog version 'ml-100k-2'"):
        service(setup, **{"catalog-version": "ml-100k-2"})


def test_recommend_cli_names_what_is_missing(setup, tmp_path, capsys):
    args = cli_platform_args(setup["csv"], setup["root"], state=tmp_path / "never-trained")
    assert crossfed(["recommend", *args, "--user", "1"]) == 1
    assert "no platform state" in capsys.readouterr().err


def test_serving_and_fold_in_refuse_an_interactions_file_with_the_same_number_of_other_users(setup, tmp_path, capsys):
    """Row u of the user tower is the state's user u: another user in the file must not get that vector."""
    platform: OperatorData = setup["platform"]
    replaced = str(platform.user_ids[3])
    for name in ("interactions", "users"):
        table = pd.read_csv(getattr(setup["csv"], name), dtype=str)
        table.loc[table["user_id"] == replaced, "user_id"] = "stranger"
        table.to_csv(tmp_path / f"{name}.csv", index=False)
    other = load_operator_data(tmp_path / "interactions.csv", setup["catalog"], users=tmp_path / "users.csv")
    assert len(other.user_ids) == len(platform.user_ids) and "stranger" in other.user_ids
    state_file = setup["root"] / "state" / PlatformState.FILE_NAME
    refusal = (
        f"{state_file}: the platform state was trained on other users than the data it is loaded with "
        f"({len(platform.user_ids)} users in the state, {len(other.user_ids)} in the data): row 3 is user "
        f"{replaced!r} in the state but {str(other.user_ids[3])!r} in the data"
    )
    with pytest.raises(ServingError) as refused:
        RecommendationService.open(other, setup["root"] / "run", setup["root"] / "state")
    assert str(refused.value).startswith(refusal)
    pd.DataFrame({"user_id": ["stranger"], "item_id": [platform.item_ids[0]], "timestamp": [1]}).to_csv(
        tmp_path / "new.csv", index=False
    )
    args = [
        "--interactions",
        str(tmp_path / "interactions.csv"),
        "--user-features",
        str(tmp_path / "users.csv"),
        "--catalog",
        str(setup["csv"].catalog),
        "--global-model",
        str(setup["root"] / "run"),
        "--state-dir",
        str(setup["root"] / "state"),
        "--new-interactions",
        str(tmp_path / "new.csv"),
    ]
    assert crossfed(["fold-in", *args]) == 1
    assert refusal in capsys.readouterr().err
    assert not (setup["root"] / "state" / FoldIns.FILE_NAME).exists()


def test_the_fine_tuned_copy_is_served_and_stays_in_the_state_dir(setup, tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    (state / PlatformState.FILE_NAME).write_bytes((setup["root"] / "state" / PlatformState.FILE_NAME).read_bytes())
    platform = setup["platform"]
    served = RecommendationService.open(
        platform, setup["root"] / "run", state, {"serve-model": "fine-tuned", "finetune-epochs": 1}
    )
    assert (state / PrivateCopy.FILE_NAME).is_file()
    global_served = service(setup)
    user = platform.user_ids[0]
    private_scores = served.scorer.scores(served.scorer.user_vectors(torch.tensor([0])))
    global_scores = global_served.scorer.scores(global_served.scorer.user_vectors(torch.tensor([0])))
    assert not torch.allclose(private_scores, global_scores)
    assert {r.item_id for r in served.recommend(user, 20)}.isdisjoint(served.history(user))
    again = RecommendationService.open(
        platform, setup["root"] / "run", state, {"serve-model": "fine-tuned", "finetune-epochs": 1}
    )
    assert torch.equal(again.scorer.scores(again.scorer.user_vectors(torch.tensor([0]))), private_scores)


def test_the_local_first_model_is_served_cached_and_kept_in_the_state_dir(setup, tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    (state / PlatformState.FILE_NAME).write_bytes((setup["root"] / "state" / PlatformState.FILE_NAME).read_bytes())
    platform = setup["platform"]
    # Two epochs bound the local model's training: what is tested is serving and caching, not its quality.
    settings = {"serve-model": "local-first", "local-first-weights": "0.5", "num-server-rounds": 2}
    served = RecommendationService.open(platform, setup["root"] / "run", state, settings)
    assert (state / PrivateCopy.FILE_NAME).is_file()
    assert float(served.model.prior_weight) == 0.5
    user = platform.user_ids[0]
    scores = served.scorer.scores(served.scorer.user_vectors(torch.tensor([0])))
    assert not torch.allclose(
        scores, service(setup).scorer.scores(service(setup).scorer.user_vectors(torch.tensor([0])))
    )
    assert {r.item_id for r in served.recommend(user, 20)}.isdisjoint(served.history(user))
    again = RecommendationService.open(platform, setup["root"] / "run", state, settings)
    assert torch.equal(again.scorer.scores(again.scorer.user_vectors(torch.tensor([0]))), scores)


# ------------------------------------------------------------------------- fold-in, cold start


def held_out_users(exported: ExportedPlatform, platform: OperatorData) -> dict[str, tuple[np.ndarray, int, dict]]:
    """Each held-out user's history (all but the latest item), latest item, and features."""
    out = {}
    ordered = exported.held_out.sort_values(["user_id", "timestamp"], kind="stable")
    for user, rows in ordered.groupby("user_id"):
        codes = platform.item_codes(rows["item_id"].to_numpy())
        features = {c: str(rows.iloc[0][c]) for c in ("age", "gender", "occupation")}
        out[user] = (codes[:-1], int(codes[-1]), features)
    return out


def test_folding_in_held_out_users_beats_their_cold_start_list(setup):
    """Acceptance: users held out of training, HR@10 of their latest item over the whole catalog."""
    platform: OperatorData = setup["platform"]
    served = service(setup)
    users = held_out_users(setup["csv"], platform)
    assert len(users) == HELD_OUT and not set(users) & set(platform.user_ids)
    cold_hits, fold_hits = [], []
    for user, (_, target, features) in users.items():
        cold = served.recommend(user, 10, features)
        assert cold[0].explanation.basis.startswith("cold start")
        cold_hits.append(str(platform.item_ids[target]) in {r.item_id for r in cold})
    served.fold_in({u: h for u, (h, _, _) in users.items()}, {u: f for u, (_, _, f) in users.items()}, save=False)
    for user, (_history, target, _) in users.items():
        folded = served.recommend(user, 10)
        assert folded[0].explanation.basis == "fold-in"
        fold_hits.append(str(platform.item_ids[target]) in {r.item_id for r in folded})
    print(f"held-out users: fold-in HR@10 {np.mean(fold_hits):.3f}, cold start HR@10 {np.mean(cold_hits):.3f}")
    assert np.mean(fold_hits) > np.mean(cold_hits)


def test_cold_start_is_popularity_among_users_like_the_newcomer(setup):
    platform: OperatorData = setup["platform"]
    served = service(setup)
    anyone = [r.item_id for r in served.recommend("newcomer", 10)]
    counts = np.bincount(platform.data.interactions.items, minlength=len(platform.item_ids))
    assert anyone == [str(platform.item_ids[i]) for i in np.argsort(-counts, kind="stable")[:10]]
    women = served.recommend("newcomer", 10, {"gender": "F", "occupation": "student"})
    assert "gender='F'" in women[0].explanation.basis
    segment = find_segment(platform.attributes, {"gender": "F", "occupation": "student"})
    expected = np.argsort(-popularity_scores(platform.data.interactions, segment), kind="stable")[:10]
    assert [r.item_id for r in women] == [str(platform.item_ids[i]) for i in expected]
    assert [r.item_id for r in women] != anyone


def test_foldin_cli_updates_users_without_touching_the_state_or_the_global_model(setup, tmp_path, capsys):
    platform: OperatorData = setup["platform"]
    state = tmp_path / "state"
    state.mkdir()
    original = (setup["root"] / "state" / PlatformState.FILE_NAME).read_bytes()
    (state / PlatformState.FILE_NAME).write_bytes(original)
    global_model = (setup["root"] / "run" / FinalModel.FILE_NAME).read_bytes()
    held = setup["csv"].held_out
    newcomer = held["user_id"].iloc[0]
    new_rows = held[held["user_id"] == newcomer][["user_id", "item_id", "timestamp"]]
    known = platform.user_ids[0]
    known_history = set(service(setup).history(known))
    unseen = next(i for i in platform.item_ids if i not in known_history)
    new_rows = pd.concat(
        [new_rows, pd.DataFrame({"user_id": [known, known], "item_id": [unseen, "not-an-item"], "timestamp": [1, 2]})]
    )
    new_rows.to_csv(tmp_path / "new.csv", index=False)
    held[held["user_id"] == newcomer][["user_id", "age", "gender", "occupation"]].drop_duplicates().to_csv(
        tmp_path / "new_users.csv", index=False
    )
    args = [
        *cli_platform_args(setup["csv"], setup["root"], state),
        "--new-interactions",
        str(tmp_path / "new.csv"),
        "--new-user-features",
        str(tmp_path / "new_users.csv"),
    ]
    assert crossfed(["fold-in", *args]) == 0
    out = capsys.readouterr().out
    assert "folded in 2 users (1 new, 1 known)" in out and "1 rows with items not in catalog" in out
    assert (state / PlatformState.FILE_NAME).read_bytes() == original
    assert (setup["root"] / "run" / FinalModel.FILE_NAME).read_bytes() == global_model
    assert sorted(p.name for p in state.iterdir()) == [FoldIns.FILE_NAME, PlatformState.FILE_NAME]
    served = RecommendationService.open(platform, setup["root"] / "run", state)
    assert unseen in served.history(known)
    # A changed model (here: other fold-in settings) folds the same users in again from their items.
    refolded = RecommendationService.open(platform, setup["root"] / "run", state, {"foldin-steps": 5})
    assert refolded.history(known) == served.history(known)
    assert not torch.equal(refolded.foldins.vectors[known][0], served.foldins.vectors[known][0])
    for user in (newcomer, known):
        recommendations = served.recommend(user, 10)
        assert recommendations[0].explanation.basis == "fold-in"
        history = set(served.history(user))
        assert all(r.item_id not in history for r in recommendations)
        assert all({i for i, _ in r.explanation.similar_items} <= history for r in recommendations)


def test_the_final_model_is_served_with_the_user_tower_of_its_selected_round(setup, tmp_path):
    """Early stopping: ``global_model.pt`` is the selected round's, and so must the user tower be."""
    state_dir, run = tmp_path / "state", tmp_path / "run"
    state_dir.mkdir()
    run.mkdir()
    state = PlatformState.load(setup["root"] / "state")
    selected = {name: torch.randn_like(value) for name, value in state.user_tower.items()}
    state.kept_towers = {3: selected, state.last_round: state.user_tower}
    state.save(state_dir)
    final = FinalModel.load(setup["root"] / "run")
    FinalModel(arrays=final.arrays, config=final.config, selected_round=3).save(run)
    served = RecommendationService.open(setup["platform"], run, state_dir)
    tower = {name: value for name, value in served.global_model.state_dict().items() if name in selected}
    assert tower.keys() == selected.keys() and all(torch.equal(tower[name], selected[name]) for name in selected)
