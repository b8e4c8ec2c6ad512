"""The API client reads the proxy environment once, not on every request."""

from __future__ import annotations

import pytest
from kubernetes_asyncio import client

from kubewire import KubeClient


async def _client() -> KubeClient:
    return KubeClient(client.ApiClient(client.Configuration(host="https://10.1.2.3:6443")))


async def test_a_proxy_from_the_environment_is_kept_and_not_looked_up_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    kube = await _client()
    try:
        assert kube.api.rest_client.proxy == "http://proxy.example:3128"
        assert kube.api.rest_client.pool_manager.trust_env is False
    finally:
        await kube.close()


async def test_no_proxy_for_a_bypassed_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "10.1.2.3")
    kube = await _client()
    try:
        assert kube.api.rest_client.proxy is None
        assert kube.api.rest_client.pool_manager.trust_env is False
    finally:
        await kube.close()
