"""Coverage-guided fuzzing of every secagg loader with atheris (libFuzzer).

Each target feeds arbitrary bytes to one loader. The first byte picks how: as
they are (mode 0, so the envelope checks are fuzzed), with a valid digest
appended (mode 1, so the header and body parsers are fuzzed), or as the
MessagePack body of a payload of the target's kind (mode 2, so every field
validator and the ciphertext parsers are fuzzed). Any exception that is not a
``secagg.SecAggError`` is a finding (libFuzzer stops and saves the input); so is
an input that runs longer than ``-timeout`` seconds or grows memory past
``-rss_limit_mb``. The corpus starts from valid payloads so that mutations
reach deep into the parsers, not only the header checks.

    python fuzz/fuzz_loaders.py update-paillier -runs=100000
    python fuzz/fuzz_loaders.py all -runs=100000       # every target, one after the other
    make fuzz                                          # all targets, 100,000 inputs each

Targets: public-{paillier,ckks,bfv}, secret-{paillier,ckks,bfv},
update-{paillier,ckks,bfv}, add-{paillier,ckks,bfv} (Aggregator.add, checking
that a refused update leaves the state unchanged), checkpoint-{...},
sealed-secret (passphrase-protected secret context, cheap scrypt work factor).
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

SCHEMES = ("paillier", "ckks", "bfv")
LOADERS = ("public", "secret", "update", "add", "checkpoint")
TARGETS = [f"{loader}-{scheme}" for loader in LOADERS for scheme in SCHEMES] + ["sealed-secret"]


def _context(scheme: str):
    import secagg

    kw = dict(key_bits=512, insecure=True) if scheme == "paillier" else {}
    return secagg.generate(scheme, max_clients=6, max_terms=1, **kw)


def _seeds(target: str) -> tuple[list[bytes], object]:
    """Valid payloads for the target, and the function under test."""
    import secagg

    tree = {"w": np.linspace(-1, 1, 12).reshape(3, 4).astype(np.float32), "b": [np.zeros(3), None]}
    if target == "sealed-secret":
        ctx = _context("paillier")
        sealed = ctx.to_sealed_bytes("pw", scrypt_n=2**4)
        return [sealed], lambda data: secagg.SecretContext.from_bytes(data, passphrase="pw")
    loader, scheme = target.split("-")
    ctx = _context(scheme)
    pub = secagg.PublicContext.from_bytes(ctx.public.to_bytes())
    updates = [pub.encrypt(tree).to_bytes(), pub.encrypt_term(tree).to_bytes()]
    agg = secagg.Aggregator(pub)
    agg.add(updates[0])
    agg.add(pub.encrypt(tree))
    updates.append(agg.result().to_bytes())
    if loader == "public":
        return [ctx.public.to_bytes()], secagg.PublicContext.from_bytes
    if loader == "secret":
        return [ctx.to_bytes()], secagg.SecretContext.from_bytes
    if loader == "update":
        return updates, lambda data: secagg.EncryptedUpdate.from_bytes(data, pub)
    if loader == "checkpoint":
        return [agg.to_bytes()], lambda data: secagg.Aggregator.from_bytes(data, pub)
    target_agg = secagg.Aggregator(pub)
    target_agg.add(pub.encrypt(tree))

    def add(data: bytes) -> None:
        before = (len(target_agg), target_agg.terms, frozenset(target_agg._seen),
                  pub.backend.ciphertexts_to_wire(target_agg._sum))
        try:
            target_agg.add(data)
        except secagg.SecAggError:
            after = (len(target_agg), target_agg.terms, frozenset(target_agg._seen),
                     pub.backend.ciphertexts_to_wire(target_agg._sum))
            if after != before:
                raise AssertionError("a refused update changed the aggregator's state") from None
            raise
        # accepted (a legitimate mutation, e.g. another round id): start over
        target_agg.__init__(pub)
        target_agg.add(pub.encrypt(tree))

    return updates, add


def _kind(target: str):
    from secagg.wire import Kind

    loader = target.split("-")[0]
    return {"public": Kind.PUBLIC_CONTEXT, "secret": Kind.SECRET_CONTEXT, "update": Kind.UPDATE,
            "add": Kind.UPDATE, "checkpoint": Kind.CHECKPOINT, "sealed": Kind.SEALED_SECRET}[loader]


def run_target(target: str, argv: list[str]) -> None:
    """Fuzz one target in this process (atheris takes over argv)."""
    import atheris

    import secagg
    import secagg.keystore
    import secagg.schemes.lattice.bfv
    import secagg.schemes.lattice.ckks
    import secagg.schemes.paillier.backend
    from secagg import wire

    atheris.instrument_all()
    seeds, func = _seeds(target)
    kind = _kind(target)
    runs = next((int(a.split("=", 1)[1]) for a in argv if a.startswith("-runs=")), 0)
    # seeds in all three modes
    seeds = [b"\0" + s for s in seeds] + [b"\1" + s[:-16] for s in seeds] + [
        b"\2" + s[16:-16] for s in seeds]
    corpus = tempfile.mkdtemp(prefix=f"secagg-fuzz-{target}-")
    for i, seed in enumerate(seeds):
        with open(os.path.join(corpus, f"seed{i}"), "wb") as f:
            f.write(seed)
    counts = {"inputs": 0, "refused": 0, "accepted": 0}
    start = time.perf_counter()

    def one_input(data: bytes) -> None:
        counts["inputs"] += 1
        mode, rest = (data[0] % 3, data[1:]) if data else (0, b"")
        if mode == 1:
            rest = rest + wire.envelope_digest(rest)
        elif mode == 2:
            head = wire._HEADER.pack(wire.MAGIC, wire.VERSION, int(kind), len(rest)) + rest
            rest = head + wire.envelope_digest(head)
        try:
            func(rest)
            counts["accepted"] += 1
        except secagg.SecAggError:
            counts["refused"] += 1
        if counts["inputs"] == runs:
            report()

    def report() -> None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"FUZZ {target}: {counts['inputs']} inputs, {counts['refused']} refused with "
              f"SecAggError, {counts['accepted']} accepted, 0 unexpected exceptions, "
              f"peak RSS {peak:.0f} MiB, {time.perf_counter() - start:.0f} s", flush=True)
        with open(os.environ.get("SECAGG_FUZZ_LOG", os.devnull), "a") as log:
            log.write(f"{target}\t{counts['inputs']}\t{counts['refused']}\t{counts['accepted']}\t"
                      f"{peak:.0f}\t{time.perf_counter() - start:.0f}\n")

    max_len = max(len(s) for s in seeds) * 2
    atheris.Setup([sys.argv[0], *argv, f"-max_len={max_len}", "-timeout=10",
                   "-rss_limit_mb=3072", corpus], one_input)
    atheris.Fuzz()


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in (*TARGETS, "all"):
        print(__doc__)
        return 2
    target, rest = sys.argv[1], sys.argv[2:]
    if target != "all":
        run_target(target, rest)
        return 0
    failures = 0
    for t in TARGETS:
        proc = subprocess.run([sys.executable, __file__, t, *rest], check=False)
        failures += proc.returncode != 0
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
