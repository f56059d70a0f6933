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

from secagg import errors, schemes
from secagg.aggregator import Aggregator
from secagg.codec import FixedPointCodec
from secagg.context import PublicContext, RawSum, SecretContext, generate

# Every error also lives here (``secagg.FormatError`` ...), as before; the full
# list is ``secagg.errors.__all__``.
from secagg.errors import (  # noqa: F401
    AggregateRefusedError,
    AppFailedError,
    CapacityError,
    CiphertextError,
    ConfigError,
    ContextMismatchError,
    CorruptPayloadError,
    CountMismatchError,
    DecryptionCheckError,
    DeviceError,
    EmptyAggregateError,
    EncodingError,
    FormatError,
    InsecureContextError,
    InsecureThresholdError,
    InsufficientClientsError,
    InvalidPartialError,
    KeyAuthenticationError,
    MaskingProtocolError,
    MissingExtraError,
    MissingSecretKeyError,
    NoiseBudgetError,
    NotEnoughPartialsError,
    PeerSetError,
    PlanningError,
    ReconstructionError,
    ReplayError,
    RoundAlreadyDecryptedError,
    RoundMismatchError,
    SecAggError,
    SecAggWarning,
    ShareDecryptionError,
    SignatureError,
    StageError,
    SumOverflowError,
    TooFewSurvivorsError,
    TreeError,
    TreeMismatchError,
    TruncatedPayloadError,
    UnknownSignerError,
    UnmaskRefusedError,
    UnsupportedVersionError,
    UnverifiedAggregateError,
    WeightError,
)
from secagg.schemes.lattice.planner import CkksPlan, plan_ckks  # noqa: F401
from secagg.tree import LeafSpec, TreeSpec, flatten, unflatten
from secagg.update import EncryptedUpdate
from secagg.wire import Kind

__version__ = "0.1.0"

# What a user needs; errors are in secagg.errors (and importable from here).
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
    "Kind",
    "SecAggError",
    "errors",
    "schemes",
    "__version__",
]
