"""Shamir secret sharing over ``GF(p)``, ``p = 2**31 - 1``, vectorized with numpy.

A 32-byte secret (a self-mask seed or an X25519 private key) is cut into
:data:`LIMBS` limbs of :data:`LIMB_BITS` bits, each below ``p``, and every limb
is shared with its own random polynomial of degree ``t - 1``. All limbs of all
of a client's secrets are shared at once: one Horner pass over an
``(holders, secrets, limbs)`` int64 array per coefficient. Every product is
reduced mod ``p`` before the next addition, so intermediate values stay below
``2**62 + 2**31 < 2**63``.

Reconstruction takes, for each secret, ``t`` shares and the holders' x
coordinates; the Lagrange coefficients at 0 are computed once per distinct
reconstruction set (vectorized across sets), then applied to every limb of
every secret that uses that set.

Coefficients are drawn from the operating system's CSPRNG (``os.urandom``)
by rejection (31-bit words, the single value ``p`` redrawn), so they are
exactly uniform in ``[0, p)``: any ``t - 1`` shares are independent of the
secret (Shamir, "How to share a secret", CACM 1979).
"""

from __future__ import annotations

import os

import numpy as np

from secagg.errors import ConfigError

__all__ = ["P", "LIMBS", "LIMB_BITS", "SECRET_BYTES", "uniform_field", "secret_to_limbs",
           "limbs_to_secret", "split", "lagrange_at_zero", "combine", "combine_many"]

P = (1 << 31) - 1
SECRET_BYTES = 32
LIMB_BITS = 30
LIMBS = -(-SECRET_BYTES * 8 // LIMB_BITS)  # 9 limbs of 30 bits hold 256 bits
_LIMB_MASK = (1 << LIMB_BITS) - 1


def uniform_field(shape: tuple[int, ...]) -> np.ndarray:
    """Exactly uniform int64 elements of ``[0, p)`` from ``os.urandom`` (rejection sampling)."""
    count = int(np.prod(shape, dtype=np.int64))
    out = np.frombuffer(os.urandom(4 * count), dtype="<u4").astype(np.int64) & P
    bad = np.flatnonzero(out == P)  # 31 uniform bits; only the value p itself is out of range
    while bad.size:
        redraw = np.frombuffer(os.urandom(4 * bad.size), dtype="<u4").astype(np.int64) & P
        out[bad] = redraw
        bad = bad[redraw == P]
    return out.reshape(shape)


def secret_to_limbs(secret: bytes) -> np.ndarray:
    """A 32-byte secret as :data:`LIMBS` int64 limbs below ``2**30`` (little-endian)."""
    if len(secret) != SECRET_BYTES:
        raise ConfigError(f"a shared secret must be {SECRET_BYTES} bytes; found {len(secret)}.")
    value = int.from_bytes(secret, "little")
    return np.array([(value >> (LIMB_BITS * i)) & _LIMB_MASK for i in range(LIMBS)], dtype=np.int64)


def limbs_to_secret(limbs: np.ndarray) -> bytes | None:
    """The 32-byte secret of :func:`secret_to_limbs`, or ``None`` if the limbs cannot be one."""
    value = 0
    for i, limb in enumerate(limbs.tolist()):
        if not 0 <= limb <= _LIMB_MASK:
            return None
        value |= limb << (LIMB_BITS * i)
    if value >> (8 * SECRET_BYTES):
        return None
    return value.to_bytes(SECRET_BYTES, "little")


def split(secrets: np.ndarray, xs: np.ndarray, threshold: int) -> np.ndarray:
    """Shares of every limb of every secret for every holder.

    Args:
        secrets: int64 array of field elements, any shape ``S`` (e.g. ``(2, LIMBS)``).
        xs: the holders' distinct non-zero x coordinates, shape ``(H,)``.
        threshold: ``t``: any ``t`` shares reconstruct, ``t - 1`` reveal nothing.

    Returns:
        int64 array of shape ``(H, *S)``: ``out[h]`` is holder ``h``'s share.
    """
    secrets = np.asarray(secrets, dtype=np.int64)
    x = np.asarray(xs, dtype=np.int64).reshape((-1,) + (1,) * secrets.ndim)
    if threshold < 1:
        raise ConfigError(f"threshold must be at least 1; found {threshold}.")
    coeffs = uniform_field((threshold - 1, *secrets.shape))  # a_1 .. a_{t-1}
    acc = np.zeros((x.shape[0], *secrets.shape), dtype=np.int64)
    for j in range(threshold - 2, -1, -1):  # Horner from the top coefficient
        acc *= x
        acc += coeffs[j]
        acc %= P
    acc *= x
    acc += secrets
    acc %= P
    return acc


def _modpow(base: np.ndarray, exponent: int) -> np.ndarray:
    result = np.ones_like(base)
    b = base % P
    e = exponent
    while e:
        if e & 1:
            result = result * b % P
        b = b * b % P
        e >>= 1
    return result


def lagrange_at_zero(xs: np.ndarray) -> np.ndarray:
    """Lagrange coefficients at 0 for each row of x coordinates.

    ``xs`` has shape ``(R, t)`` (or ``(t,)``), distinct non-zero values below ``p``
    in each row; returns int64 ``lambda`` of the same shape with
    ``f(0) = sum_j lambda_j f(x_j) mod p`` for every polynomial of degree ``< t``.
    """
    x = np.atleast_2d(np.asarray(xs, dtype=np.int64)) % P
    rows, t = x.shape
    num = np.ones((rows, t), dtype=np.int64)
    den = np.ones((rows, t), dtype=np.int64)
    for m in range(t):
        xm = x[:, m : m + 1]
        factor_num = np.broadcast_to(xm, (rows, t)).copy()
        factor_den = (xm - x) % P
        factor_num[:, m] = 1
        factor_den[:, m] = 1
        num = num * factor_num % P
        den = den * factor_den % P
    if np.any(den == 0):
        raise ConfigError("reconstruction needs distinct x coordinates.")
    lam: np.ndarray = num * _modpow(den, P - 2) % P
    return lam.reshape(np.shape(xs))


def combine(xs: np.ndarray, shares: np.ndarray) -> np.ndarray:
    """Reconstruct from ``t`` shares: ``xs`` shape ``(t,)``, ``shares`` shape ``(t, *S)``."""
    lam = lagrange_at_zero(np.asarray(xs))
    s = np.asarray(shares, dtype=np.int64)
    weighted = lam.reshape((-1,) + (1,) * (s.ndim - 1)) * s % P
    return np.asarray(weighted.sum(axis=0) % P, dtype=np.int64)


def combine_many(xs: np.ndarray, shares: np.ndarray) -> np.ndarray:
    """Reconstruct ``T`` secrets at once, each from its own ``t`` shares.

    Args:
        xs: int64 ``(T, t)``: the holders whose shares reconstruct secret ``i``.
        shares: int64 ``(T, t, L)``: their shares (``L`` limbs).

    Returns:
        int64 ``(T, L)``. Lagrange coefficients are computed once per distinct row of ``xs``.
    """
    x = np.asarray(xs, dtype=np.int64)
    s = np.asarray(shares, dtype=np.int64)
    if x.shape[0] == 0:
        return np.zeros((0, s.shape[2]), dtype=np.int64)
    groups: dict[bytes, int] = {}
    inverse = np.array([groups.setdefault(row.tobytes(), len(groups)) for row in x], dtype=np.intp)
    firsts = np.unique(inverse, return_index=True)[1]
    lam = lagrange_at_zero(x[firsts])[inverse]
    weighted = lam[:, :, None] * s
    weighted %= P
    return np.asarray(weighted.sum(axis=1) % P, dtype=np.int64)
