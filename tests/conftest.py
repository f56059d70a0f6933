"""Shared fixtures: hypothesis profiles, session-scoped keys, a `scheme` fixture.

The schemes come from the registry (``tests.helpers.SCHEMES``). ``task_identity``
is shared by the Flower tests (``tests/integrations``, ``tests/adversary``); it
imports flwr only when used.

Profiles: ``default`` (the CI run, about 100 examples a property), ``dev`` (quick
iteration), ``nightly`` (thorough); pick one with ``SECAGG_HYPOTHESIS_PROFILE=nightly``.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

import secagg
from tests.helpers import SCHEMES, make_context

settings.register_profile(
    "dev", max_examples=10, deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.register_profile(
    "default", max_examples=100, deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.register_profile(
    "nightly", max_examples=2000, deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("SECAGG_HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(scope="session")
def contexts() -> dict[str, secagg.SecretContext]:
    return {s: make_context(s) for s in SCHEMES}


@pytest.fixture(params=SCHEMES)
def scheme(request) -> str:
    return request.param


@pytest.fixture
def ctx(contexts, scheme) -> secagg.SecretContext:
    return contexts[scheme]


@pytest.fixture
def pub(ctx) -> secagg.PublicContext:
    return secagg.PublicContext.from_bytes(ctx.public.to_bytes(), allow_insecure=True)


@pytest.fixture
def task_identity():
    """Flower messages built outside a running ServerApp need a task identity."""
    from flwr.supercore.task_identity import TaskIdentity

    saved = TaskIdentity._run_id, TaskIdentity._task_id, TaskIdentity._node_id
    TaskIdentity.run_id, TaskIdentity.task_id, TaskIdentity.node_id = 1, 1, 0
    yield
    TaskIdentity._run_id, TaskIdentity._task_id, TaskIdentity._node_id = saved


@pytest.fixture
def count_decryptions(monkeypatch) -> list[int]:
    """A list that grows by one with every ``SecretContext.decrypt_raw`` call."""
    calls: list[int] = []
    original = secagg.SecretContext.decrypt_raw

    def counting(self, *a, **kw):
        calls.append(1)
        return original(self, *a, **kw)

    monkeypatch.setattr(secagg.SecretContext, "decrypt_raw", counting)
    return calls
