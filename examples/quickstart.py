"""Quickstart: five clients, one untrusted aggregator, one key holder.

Each client computes the gradients of a small torch model on its own data and
sends them encrypted; the aggregator sums ciphertexts holding only public
material; the key holder decrypts the mean gradient and takes an optimizer step.

    python examples/quickstart.py            # both schemes
    python examples/quickstart.py ckks       # one scheme
"""

from __future__ import annotations

import sys
import time

import torch

import secagg


def client_gradients(model: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """One client's gradients on its private data, as a name -> tensor dict."""
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(32, 8, generator=g), torch.randint(0, 3, (32,), generator=g)
    model.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    return {name: p.grad.detach().clone() for name, p in model.named_parameters()}


def main(schemes: list[str]) -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    grads = [client_gradients(model, seed) for seed in range(5)]
    plain_mean = {k: sum(g[k] for g in grads) / len(grads) for k in grads[0]}

    for scheme in schemes:
        t0 = time.perf_counter()
        # key holder: make keys, publish the public half
        ctx = secagg.generate(scheme, max_clients=100, clip=1.0, frac_bits=16)
        blob = ctx.public.to_bytes()

        # clients and aggregator: public material only
        pub = secagg.PublicContext.from_bytes(blob)
        agg = secagg.Aggregator(pub)
        sent = 0
        for g in grads:
            data = pub.encrypt(g).to_bytes()
            sent += len(data)
            agg.add(data)
        total = agg.result().to_bytes()

        # key holder: decrypt the aggregate only, then step
        mean = ctx.decrypt(total, reduce="mean")
        err = max((mean[k] - plain_mean[k]).abs().max().item() for k in mean)
        for name, p in model.named_parameters():
            p.grad = mean[name]
        torch.optim.SGD(model.parameters(), lr=0.1).step()

        n_values = sum(t.numel() for t in grads[0].values())
        print(
            f"{scheme:9s} {len(agg)} clients x {n_values} values: max |secure mean - plain mean| "
            f"= {err:.2e} (bound {pub.codec.error_bound:.2e}), {sent / len(grads) / n_values:.1f} "
            f"bytes/value uploaded, {time.perf_counter() - t0:.2f} s"
        )
        assert err <= pub.codec.error_bound


if __name__ == "__main__":
    main(sys.argv[1:] or ["paillier", "ckks"])
