"""Shamir sharing over GF(2**31 - 1): round trips, thresholds, vectorized reconstruction."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from secagg.errors import ConfigError
from secagg.masking import shamir

secrets_32 = st.binary(min_size=32, max_size=32)


@given(st.lists(secrets_32, min_size=1, max_size=3), st.integers(1, 12), st.data())
def test_any_t_shares_reconstruct(secrets, t, data):
    n = data.draw(st.integers(t, 20), label="holders")
    xs = np.array(data.draw(st.lists(st.integers(1, shamir.P - 1), min_size=n, max_size=n,
                                     unique=True), label="xs"))
    limbs = np.stack([shamir.secret_to_limbs(s) for s in secrets])
    shares = shamir.split(limbs, xs, t)
    assert shares.shape == (n, len(secrets), shamir.LIMBS)
    assert shares.min() >= 0 and shares.max() < shamir.P
    pick = sorted(data.draw(st.lists(st.integers(0, n - 1), min_size=t, max_size=t, unique=True),
                            label="subset"))
    rebuilt = shamir.combine(xs[pick], shares[pick])
    assert [shamir.limbs_to_secret(r) for r in rebuilt] == secrets


@given(secrets_32, st.integers(2, 10))
def test_t_minus_one_shares_do_not_give_the_secret(secret, t):
    xs = np.arange(1, t + 1)
    shares = shamir.split(shamir.secret_to_limbs(secret)[None], xs, t)
    full = shamir.combine(xs, shares)
    short = shamir.combine(xs[:-1], shares[:-1])   # interpolates a degree t-2 polynomial: wrong
    assert shamir.limbs_to_secret(full[0]) == secret
    assert not np.array_equal(short, full)  # fails with probability about 9 * 2**-31


def test_fewer_than_t_shares_look_uniform_whatever_the_secret():
    # t - 1 = 2 holders' shares of secret 0 and of secret p - 1: both spread evenly over 8 bins
    t, xs = 3, np.array([5, 9, 13])
    for secret in (0, shamir.P - 1):
        shares = shamir.split(np.full((4000, 1), secret), xs, t)[:2, :, 0]   # holders 5 and 9
        for h in shares:
            counts = np.bincount(h * 8 // shamir.P, minlength=8)
            assert counts.min() > 4000 / 8 * 0.8 and counts.max() < 4000 / 8 * 1.2


def test_combine_many_matches_combine_and_reuses_sets():
    t = 5
    secrets = np.stack([shamir.secret_to_limbs(bytes([i]) * 32) for i in range(6)])
    xs_all = np.arange(1, 10)
    shares = shamir.split(secrets, xs_all, t)  # (9, 6, L)
    rows = [np.array([0, 1, 2, 3, 4]), np.array([4, 5, 6, 7, 8]), np.array([0, 1, 2, 3, 4]),
            np.array([1, 3, 5, 7, 8]), np.array([0, 2, 4, 6, 8]), np.array([4, 5, 6, 7, 8])]
    xs = np.stack([xs_all[r] for r in rows])
    sh = np.stack([shares[r, i] for i, r in enumerate(rows)])
    got = shamir.combine_many(xs, sh)
    for i, r in enumerate(rows):
        np.testing.assert_array_equal(got[i], shamir.combine(xs_all[r], shares[r, i]))
        assert shamir.limbs_to_secret(got[i]) == bytes([i]) * 32


def test_uniform_field_is_in_range():
    x = shamir.uniform_field((4, 10_000))
    assert x.dtype == np.int64 and x.min() >= 0 and x.max() < shamir.P
    assert len(np.unique(x)) > 39_000  # no stuck generator


def test_limbs_round_trip_and_bad_limbs():
    for s in (bytes(32), b"\xff" * 32, bytes(range(32))):
        assert shamir.limbs_to_secret(shamir.secret_to_limbs(s)) == s
    bad = shamir.secret_to_limbs(bytes(32))
    bad[0] = 1 << 30
    assert shamir.limbs_to_secret(bad) is None
    bad = shamir.secret_to_limbs(bytes(32))
    bad[-1] = 1 << 20  # beyond 256 bits
    assert shamir.limbs_to_secret(bad) is None
    with pytest.raises(ConfigError):
        shamir.secret_to_limbs(b"short")


def test_repeated_x_coordinates_are_refused():
    with pytest.raises(ConfigError):
        shamir.lagrange_at_zero(np.array([1, 2, 2]))
