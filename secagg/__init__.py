"""secagg: secure aggregation of gradient and model-update trees for federated learning.

Quantize (``FixedPointCodec``), encrypt under packed Paillier (``phe`` keys) or
CKKS (TenSEAL), sum on an untrusted server (``Aggregator``), and decrypt and
decode only the aggregate (``SecretContext.decrypt``)::

    import secagg
    ctx = secagg.generate("paillier", max_clients=100, clip=1.0, frac_bits=16)
    pub = secagg.PublicContext.from_bytes(ctx.public.to_bytes())
    agg = secagg.Aggregator(pub)
    for grads in client_grads:
        agg.add(pub.encrypt(grads).to_bytes())
    mean = ctx.decrypt(agg.result(), reduce="mean")
"""

from __future__ import annotations

from .aggregator import Aggregator
from .codec import FixedPointCodec
from .context import PublicContext, RawSum, SecretContext, generate
from .errors import (
    CapacityError,
    CiphertextError,
    ConfigError,
    ContextMismatchError,
    CorruptPayloadError,
    CountMismatchError,
    DecryptionCheckError,
    EmptyAggregateError,
    EncodingError,
    FormatError,
    InsecureContextError,
    InsufficientClientsError,
    MissingSecretKeyError,
    NoiseBudgetError,
    PlanningError,
    ReplayError,
    RoundMismatchError,
    SecAggError,
    SumOverflowError,
    TreeError,
    TreeMismatchError,
    TruncatedPayloadError,
    UnsupportedVersionError,
    WeightError,
)
from .planner import CkksPlan, plan_ckks
from .tree import LeafSpec, TreeSpec, flatten, unflatten
from .update import EncryptedUpdate
from .wire import Kind

__version__ = "0.1.0"

__all__ = [
    "generate",
    "PublicContext",
    "SecretContext",
    "EncryptedUpdate",
    "Aggregator",
    "RawSum",
    "FixedPointCodec",
    "TreeSpec",
    "LeafSpec",
    "flatten",
    "unflatten",
    "CkksPlan",
    "plan_ckks",
    "Kind",
    "SecAggError",
    "ConfigError",
    "PlanningError",
    "EncodingError",
    "TreeError",
    "TreeMismatchError",
    "WeightError",
    "FormatError",
    "TruncatedPayloadError",
    "CorruptPayloadError",
    "UnsupportedVersionError",
    "CiphertextError",
    "ContextMismatchError",
    "RoundMismatchError",
    "ReplayError",
    "CapacityError",
    "EmptyAggregateError",
    "InsufficientClientsError",
    "SumOverflowError",
    "NoiseBudgetError",
    "MissingSecretKeyError",
    "DecryptionCheckError",
    "CountMismatchError",
    "InsecureContextError",
    "__version__",
]
