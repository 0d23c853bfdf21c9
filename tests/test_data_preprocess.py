"""Splits, scaling, one-hot and experiment definitions."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.data.experiments import EXPERIMENTS, class_indices, experiment_roles
from tasks.data.preprocess import MinMaxScaler, OneHotEncoder, split_codes
from tests.conftest_data import isolated_cache  # noqa: F401


@settings(max_examples=30, deadline=None)
@given(n=st.integers(0, 35_000), cuts=st.lists(st.integers(0, 35_000), max_size=6), seed=st.integers(0, 2**31))
def test_split_codes_do_not_depend_on_batching(n, cuts, seed):
    whole = split_codes(0, n, seed)
    bounds = sorted({0, n, *(c for c in cuts if c < n)})
    parts = [split_codes(a, b, seed) for a, b in itertools.pairwise(bounds)]
    np.testing.assert_array_equal(np.concatenate(parts) if parts else whole, whole)


def test_split_proportions_exact_per_block_and_seeded():
    codes = split_codes(0, 30_000, 7)
    assert np.bincount(codes).tolist() == [24_000, 1_500, 4_500]
    assert not np.array_equal(codes, split_codes(0, 30_000, 8))
    np.testing.assert_array_equal(codes, split_codes(0, 30_000, 7))


def test_minmax_and_onehot_policy():
    X = np.array([[0, 5], [10, 5], [20, 5]], np.float32)
    sc = MinMaxScaler().partial_fit(X[:2])
    out = sc.transform(X)
    np.testing.assert_array_equal(out[:, 0], [0.0, 1.0, 2.0])  # test value beyond range: no clip
    np.testing.assert_array_equal(out[:, 1], [0.0, 0.0, 0.0])  # constant column
    enc = OneHotEncoder(["proto"]).fit({"proto": np.array(["tcp", "udp"], object)})
    hot = enc.transform({"proto": np.array(["udp", "icmp", "tcp", "icmp"], object)})
    np.testing.assert_array_equal(hot, [[0, 1], [0, 0], [1, 0], [0, 0]])
    assert enc.unseen == {"proto": {"icmp": 2}} and enc.feature_names == ["proto=tcp", "proto=udp"]


def test_experiments_are_data():
    assert set(EXPERIMENTS) >= {"1a", "2a", "1b", "2b", "1c", "2c", "1d", "2d", "1e", "2e",
                                "1f", "2f", "1g", "3a", "3b", "3c", "3d", "4a", "4b", "4c", "4d"}
    roles = experiment_roles("2a", "mnist", np.arange(10))
    assert roles.tolist() == [0, 0, 0, 0, 0, 0, 1, 1, 2, 2]
    assert EXPERIMENTS["4b"]["train_anomalies"] == [] and EXPERIMENTS["4b"]["as"] == "2a"
    from tasks.data.labels import CICIDS2018_CLASSES, NSL_KDD_CLASSES
    bot = CICIDS2018_CLASSES.index("Bot")
    assert bot in class_indices("2e", "test_anomalies", "cicids2018")
    assert bot not in class_indices("1e", "test_anomalies", "cicids2018")
    assert NSL_KDD_CLASSES.index("mscan") in class_indices("2c", "test_anomalies", "nsl-kdd")
    assert class_indices("3b", "test_anomalies", "emnist-letters") == [0, 1, 2, 3, 4, 21, 22, 23, 24, 25]
