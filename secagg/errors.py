"""Every error secagg raises on bad input or misuse.

All of them derive from :class:`SecAggError` and also from the built-in that
matches the problem (``ValueError``, ``OverflowError``, ``TypeError``), so code
that already catches ``ValueError`` keeps working. Messages name the offending
value and, where there is one, what to do next.

Two rules keep errors from leaking what a decryption found:

* An error raised *after* decrypting (a :class:`DecryptionCheckError`: the
  aggregate failed a consistency check) says what failed, never what was found:
  no count, weight sum, slot value, slot position or noise budget.
* Nothing that crosses a trust boundary (a Flower error reply, a key holder's
  answer, the server's log) carries exception text: it carries the fixed code
  and message of :func:`public_reason`, from the small table
  :data:`PUBLIC_REASONS`. A deviating server can then learn at most which of
  these few outcomes happened.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "SecAggError",
    "ConfigError",
    "PlanningError",
    "EncodingError",
    "TreeError",
    "TreeMismatchError",
    "MissingExtraError",
    "DeviceError",
    "WeightError",
    "FormatError",
    "TruncatedPayloadError",
    "CorruptPayloadError",
    "UnsupportedVersionError",
    "CiphertextError",
    "InsecureContextError",
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
    "AggregateRefusedError",
    "AppFailedError",
    "SecAggWarning",
    "MaskingProtocolError",
    "StageError",
    "PeerSetError",
    "UnmaskRefusedError",
    "KeyAuthenticationError",
    "ShareDecryptionError",
    "ReconstructionError",
    "TooFewSurvivorsError",
    "InsecureThresholdError",
    "SignatureError",
    "UnknownSignerError",
    "UnverifiedAggregateError",
    "RoundAlreadyDecryptedError",
    "InvalidPartialError",
    "NotEnoughPartialsError",
    "RelayAuthenticationError",
    "PUBLIC_REASONS",
    "public_reason",
]

#: The message of every out-of-range check after decryption (fixed: no values, no positions).
SUM_OUT_OF_RANGE = (
    "a decrypted sum lies outside the range that honest updates can reach: a client "
    "encoded out of range, or the aggregate was not made from secagg updates. It is refused."
)

#: The only error texts that leave a secret holder: code -> fixed message.
PUBLIC_REASONS: dict[str, str] = {
    "SA-CONFIG": "this node's secagg set-up is incomplete or wrong; its operator can read "
                 "the details in the node's own log",
    "SA-CONTEXT": "the payload was made under another secagg key or codec",
    "SA-FORMAT": "the payload is not a well-formed secagg payload of the expected kind",
    "SA-TREE": "the payload's tensor tree does not match the round's",
    "SA-ROUND": "the payload belongs to another round",
    "SA-REPLAY": "the payload or its sender was already counted",
    "SA-CAPACITY": "the payload would take the sum past the context's limits",
    "SA-CLIENTS": "the aggregate holds fewer client updates than min_clients",
    "SA-REFUSED": "the aggregate failed a consistency check after decryption and is refused",
    "SA-LOCKED": "this party refused an aggregate earlier and decrypts nothing more from "
                 "this sender for now",
    "SA-ENCODE": "the local update could not be encoded",
    "SA-APP": "the node's train or evaluate function failed; its operator can read the "
              "details in the node's own log",
    "SA-INTERNAL": "the message could not be processed",
}


class SecAggError(Exception):
    """Base class of every error raised by secagg on bad input or misuse.

    ``code`` is the key of its fixed public message in :data:`PUBLIC_REASONS`; a
    subclass names its own in its header (``class E(SecAggError, code="SA-...")``)
    or keeps its parent's.
    """

    code: str = "SA-INTERNAL"

    def __init_subclass__(cls, *, code: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if code is not None:
            cls.code = code


class ConfigError(SecAggError, ValueError, code="SA-CONFIG"):
    """Raised when parameters given to ``generate`` or a codec are out of range."""


class PlanningError(ConfigError):
    """Raised when no lattice parameter set can guarantee an exact decoded sum."""


class EncodingError(SecAggError, ValueError, code="SA-ENCODE"):
    """Raised when a value cannot be quantized (NaN, inf, a non-floating leaf)."""


class TreeError(SecAggError, TypeError, code="SA-TREE"):
    """Raised when a tensor tree has an unsupported container, key or leaf type."""


class TreeMismatchError(SecAggError, ValueError, code="SA-TREE"):
    """Raised when an update's tree spec (structure, leaf names, shapes) differs."""


class MissingExtraError(ConfigError, ImportError, code="SA-CONFIG"):
    """Raised when an optional dependency is missing; the message names the extra to install."""


class DeviceError(ConfigError, code="SA-CONFIG"):
    """Raised when decoding to a device that does not exist here (or is no device name)."""


class WeightError(SecAggError, ValueError, code="SA-ENCODE"):
    """Raised when a weight is not an integer in ``[1, max_weight]``."""


class FormatError(SecAggError, ValueError, code="SA-FORMAT"):
    """Raised when bytes are not a well-formed secagg payload of the expected kind."""


class TruncatedPayloadError(FormatError):
    """Raised when a payload is shorter than its own header says."""


class CorruptPayloadError(FormatError):
    """Raised when a payload's integrity digest does not match its content."""


class UnsupportedVersionError(FormatError):
    """Raised when a payload was written by a wire-format version we cannot read."""


class InsecureContextError(FormatError):
    """Raised when loading a context marked as an insecure test context without opting in."""


class CiphertextError(FormatError):
    """Raised when a ciphertext is out of range or does not match the context."""


class ContextMismatchError(SecAggError, ValueError, code="SA-CONTEXT"):
    """Raised when a payload was made under another key, scheme or codec."""


class RoundMismatchError(SecAggError, ValueError, code="SA-ROUND"):
    """Raised when an update carries another round identifier than the aggregator's."""


class ReplayError(SecAggError, ValueError, code="SA-REPLAY"):
    """Raised when the aggregator already summed this exact update."""


class CapacityError(SecAggError, OverflowError, code="SA-CAPACITY"):
    """Raised when an update would take the sum past ``max_clients`` contributions."""


class EmptyAggregateError(SecAggError, ValueError, code="SA-CLIENTS"):
    """Raised when ``result()`` is asked of an aggregator that summed nothing."""


class InsufficientClientsError(SecAggError, ValueError, code="SA-CLIENTS"):
    """Raised when decrypting a sum of fewer than ``min_clients`` updates."""


class DecryptionCheckError(SecAggError, code="SA-REFUSED"):
    """Base of the errors raised after decrypting: the aggregate failed a consistency check.

    Treat the aggregate as hostile (a deviating server can craft one from a
    victim's ciphertexts and its own encryptions): refuse it, and decrypt
    nothing else from its sender in the same round. The message never holds a
    decrypted quantity.
    """


class SumOverflowError(DecryptionCheckError, OverflowError):
    """Raised when a decrypted slot lies outside the range honest inputs can reach."""


class NoiseBudgetError(DecryptionCheckError, ArithmeticError):
    """Raised when a lattice decryption is too noisy to round to an exact integer."""


class CountMismatchError(DecryptionCheckError, ValueError):
    """Raised when the encrypted count or weight sum contradicts the payload's header."""


class AppFailedError(SecAggError, RuntimeError, code="SA-APP"):
    """Stands for an exception of a user's function that ran on decrypted data (its text stays local)."""


class AggregateRefusedError(SecAggError, ValueError):
    """Raised by a secret holder's front end (key holder, client mod) that refused an aggregate.

    Its message is the fixed public text of ``code``; the details stay in the
    secret holder's own log.
    """

    def __init__(self, code: str) -> None:
        self.code = code if code in PUBLIC_REASONS else "SA-INTERNAL"
        super().__init__(public_reason(self))


class SecAggWarning(SecAggError, UserWarning, code="SA-ENCODE"):
    """The category of secagg's warnings (``warnings.warn``), e.g. ``encrypt(on_clip="warn")``.

    It is a ``UserWarning`` (filter it with ``warnings.simplefilter("error",
    secagg.SecAggWarning)`` to turn it into an exception) and, like every class
    here, a :class:`SecAggError`.
    """


class MissingSecretKeyError(SecAggError, TypeError, code="SA-CONFIG"):
    """Raised when an operation needs the secret key and only public material is held."""


def public_reason(exc: BaseException) -> str:
    """The fixed text that may cross a trust boundary for ``exc``: ``"SA-XXX: message"``.

    Exception text never leaves a secret holder; this is all a server sees::

        >>> public_reason(SumOverflowError("anything"))
        'SA-REFUSED: the aggregate failed a consistency check after decryption and is refused'
    """
    code = exc.code if isinstance(exc, SecAggError) else "SA-INTERNAL"
    if code not in PUBLIC_REASONS:
        code = "SA-INTERNAL"
    return f"{code}: {PUBLIC_REASONS[code]}"


# -- masked aggregation (secagg.masking) ----------------------------------------------
class MaskingProtocolError(SecAggError, ValueError, code="SA-FORMAT"):
    """Raised when a masking-protocol message is well formed but does not fit the round.

    Its subclasses name the problem; the party that raised it is left unchanged
    and still accepts the right message.
    """


class StageError(MaskingProtocolError):
    """Raised when a masking message or call comes out of order (its stage is closed or not open)."""


class PeerSetError(MaskingProtocolError):
    """Raised when a message names peers that contradict what this party saw in earlier stages.

    For example a peer in an unmask request that sent no shares, a sender that is not
    a neighbour, a dropped set overlapping the survivor set, or a duplicate entry.
    """


class UnmaskRefusedError(MaskingProtocolError):
    """Raised by a masking client asked to reveal both secrets of one peer (Bonawitz et al.'s rule).

    A client reveals, for each peer, either its share of the peer's self-mask seed
    (the peer survived) or its share of the peer's mask key (the peer dropped),
    never both, across every request of the round.
    """


class KeyAuthenticationError(MaskingProtocolError, code="SA-CONTEXT"):
    """Raised when an advertised masking public key is not signed by its owner's long-term key."""


class ShareDecryptionError(MaskingProtocolError):
    """Raised when an encrypted share fails authentication (altered, replayed or misdirected)."""


class ReconstructionError(MaskingProtocolError):
    """Raised when a reconstructed secret contradicts its owner's commitment or public key.

    Some holder sent a wrong share; the aggregate is not computed.
    """


class TooFewSurvivorsError(InsufficientClientsError):
    """Raised when fewer than ``threshold`` parties remain where a secret must be recoverable.

    Raised by the server (it stops the round; nothing is unmasked) and by a client
    (it refuses to continue, or to reveal shares, with fewer than ``threshold`` peers).
    """


class InsecureThresholdError(ConfigError):
    """Raised when a masking threshold is at most half the holders of a secret, or above them.

    With ``t <= holders / 2`` two disjoint groups of ``t`` holders exist, and a server
    telling each a different story could recover both secrets of one client.
    """


# -- threshold Paillier (secagg.threshold) ----------------------------------------------
class SignatureError(FormatError):
    """Raised when a signed update's Ed25519 signature does not verify (forged or altered)."""


class UnknownSignerError(SignatureError, code="SA-CONTEXT"):
    """Raised when a signed update's signer is not a client registered with the share holder."""


class UnverifiedAggregateError(SecAggError, ValueError, code="SA-FORMAT"):
    """Raised when a share holder cannot recompute the aggregate it is asked to decrypt.

    In verified mode a share holder partially decrypts only the sum it recomputed
    from signed payloads of registered clients; an aggregate that differs from that
    sum (padded, scaled or relabelled by a deviating server) is refused.
    """


class RoundAlreadyDecryptedError(ReplayError):
    """Raised when a share holder already partially decrypted another aggregate of this round.

    A verified share holder decrypts one aggregate per round: two different subsets
    of one round's signed updates would give the server their difference.
    """


class InvalidPartialError(FormatError):
    """Raised when a partial decryption is malformed, belongs to another aggregate or key set,
    or its proof of correctness does not verify. ``holder`` names the share holder it claims.
    """

    holder: int | None = None


class NotEnoughPartialsError(SecAggError, ValueError, code="SA-INTERNAL"):
    """Raised when fewer than ``threshold`` valid partial decryptions are given to ``combine``.

    ``rejected`` lists the partials that failed verification, with the holder each named.
    """

    rejected: tuple[Any, ...] = ()


class RelayAuthenticationError(InvalidPartialError):
    """Raised when a relayed (encrypted) partial decryption fails AES-GCM authentication.

    It was altered, replayed from another round or aggregate, misdirected to
    another holder, or relabelled with another sender (:mod:`secagg.threshold.relay`).
    ``holder`` names the sender it claims; the partial is set aside.
    """
