"""What the adversaries see: recorded updates read back by round, and item inference from an update."""

from __future__ import annotations

import numpy as np

from crossfed.simulations.audit.capture import load_rounds
from crossfed.simulations.audit.items import ITEM_BIAS, infer_items, score_inference


def test_recorded_updates_are_read_back_by_round_and_platform(tmp_path):
    reference = {"shared.w": np.zeros(3, np.float32)}
    for server_round in (1, 2):
        for platform in (0, 1):
            np.savez(
                tmp_path / f"round-{server_round:04d}-platform-{platform}.npz",
                **{"global/shared.w": reference["shared.w"] + server_round},
                **{"update/shared.w": np.full(3, 10 * server_round + platform, np.float32)},
            )
    (tmp_path / "notes.npz").write_bytes(b"")  # not a recorded update: ignored
    rounds = load_rounds(tmp_path)
    assert sorted(rounds) == [1, 2]
    start, updates = rounds[2]
    assert np.all(start["shared.w"] == 2) and sorted(updates) == [0, 1]
    assert np.all(updates[1]["shared.w"] == 21)


def test_item_inference_guesses_the_items_whose_bias_rose():
    change = np.array([0.5, -0.2, 0.9, -0.1, 0.3, -0.4])[:, None]
    update = {ITEM_BIAS: change}
    assert list(infer_items(update, 3)) == [2, 0, 4]
    truth = np.array([True, False, True, False, False, True])
    result = score_inference(7, update, truth, 2)
    assert (result.platform, result.precision, result.recall, result.base_rate) == (7, 1.0, 2 / 3, 0.5)
    assert score_inference(7, {ITEM_BIAS: -change}, truth, 2).precision == 0.5
