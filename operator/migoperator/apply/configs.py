"""The mig-parted ConfigMap: install NVIDIA's defaults, add the per-node dynamic configs.

The node side (in the role of NVIDIA's mig-manager) reads named configs from
``dgxsim-system/dgxsim-mig-configs`` key ``config.yaml``. The operator creates
it with the default configs when it is missing, so users edit one place. For
a dynamic node it writes a config named ``dgxsim-dynamic-<node>-<hash>`` (a
new name per layout, since the node applies a name once) and removes that
node's older dynamic configs in the same update. Updates are optimistic
(resourceVersion) and retried on conflict. A ConfigMap a user broke is never
overwritten: the write is refused with the parse error, which the node side
reports too.
"""

from __future__ import annotations

from typing import Any

import yaml

from gpumodel.errors import MigConfigError
from gpumodel.migparted import MigPartedConfig, default_mig_configs, parse_mig_parted_config
from gpumodel.vocabulary import MIG_CONFIGMAP_KEY, MIG_CONFIGMAP_NAME
from kubewire import ConflictError, NotFoundError, or_none
from migoperator.apply.kube import Kube
from migoperator.errors import NotReadyError
from migoperator.planning.mig_planner import CONFIG_PREFIX

CONFIG_MAP = MIG_CONFIGMAP_NAME
CONFIG_KEY = MIG_CONFIGMAP_KEY
HEADER = ("# mig-parted configs (NVIDIA's format) that nodes apply when labelled\n"
          "# nvidia.com/mig.config=<name>. Installed by the dgxsim operator with the\n"
          "# default configs; dgxsim-dynamic-* entries are written by its dynamic partitioner.\n")
ATTEMPTS = 5


def render(config: MigPartedConfig) -> str:
    data = config.model_dump(mode="json", by_alias=True, exclude_none=True)
    return HEADER + yaml.safe_dump(data, sort_keys=False, width=100)


def _body(namespace: str, text: str, resource_version: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": CONFIG_MAP, "namespace": namespace,
                            "labels": {"app.kubernetes.io/managed-by": "dgxsim-operator"}}
    if resource_version:
        meta["resourceVersion"] = resource_version
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta,
            "data": {CONFIG_KEY: text}}


async def ensure_default_configmap(kube: Kube, namespace: str) -> bool:
    """Create the ConfigMap with the default configs if missing; True if it was created.

    The namespace is created only when it does not exist (``dgxsim up``); under
    the Helm chart it always does, and the operator has no right to create one.
    """
    if await or_none(kube.read_configmap(namespace, CONFIG_MAP)) is not None:
        return False
    body = _body(namespace, render(default_mig_configs()))
    try:
        await kube.create_configmap(namespace, body)
    except ConflictError:
        return False
    except NotFoundError:
        await kube.ensure_namespace(namespace)
        await kube.create_configmap(namespace, body)
    return True


def with_dynamic(config: MigPartedConfig, node: str, name: str,
                 entries: list[dict[str, object]]) -> MigPartedConfig:
    """``config`` with ``name`` added and ``node``'s other dynamic configs removed."""
    raw = config.model_dump(mode="json", by_alias=True, exclude_none=True)
    mine = f"{CONFIG_PREFIX}{node}-"
    configs = {k: v for k, v in raw["mig-configs"].items() if not k.startswith(mine)}
    configs[name] = entries
    return MigPartedConfig.model_validate({"version": "v1", "mig-configs": configs})


async def put_dynamic_config(kube: Kube, namespace: str, node: str, name: str,
                             entries: list[dict[str, object]]) -> None:
    """Add config ``name`` for ``node`` to the ConfigMap (creating it with the defaults)."""
    for _ in range(ATTEMPTS):
        current = await or_none(kube.read_configmap(namespace, CONFIG_MAP))
        if current is None:
            await ensure_default_configmap(kube, namespace)
            continue
        text = (current.get("data") or {}).get(CONFIG_KEY)
        try:
            config = parse_mig_parted_config(text or "", f"ConfigMap {namespace}/{CONFIG_MAP}")
        except MigConfigError as err:
            raise NotReadyError(f"cannot add {name}: {err}", delay_s=30.0) from err
        updated = render(with_dynamic(config, node, name, entries))
        try:
            await kube.replace_configmap(namespace, _body(
                namespace, updated, current["metadata"]["resourceVersion"]))
            return
        except ConflictError:
            continue
    raise NotReadyError(f"ConfigMap {namespace}/{CONFIG_MAP} kept changing; will retry")
