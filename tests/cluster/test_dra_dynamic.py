"""DRA on the real control plane: kube-scheduler 1.36 carves MIG slots, the node creates them.

One simulated node with ``--dra dynamic``; claims written as NVIDIA documents them
(``deviceClassName: mig.nvidia.com``, a CEL selector on the ``profile`` attribute).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from kube import AgentProcess, Cluster, dgxsim, wait_for

TIMEOUT_S = 180.0
PREFIX = "dgxr"
NODE = f"{PREFIX}-0"


@pytest.fixture(scope="module")
def agent(control_plane: Cluster, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[AgentProcess]:
    process = AgentProcess(control_plane, tmp_path_factory.mktemp("dra-agent"), 1, PREFIX,
                           "--time-scale", "1", "--dra", "dynamic")
    process.start()
    try:
        yield process
    finally:
        process.stop()
        process.delete_nodes()


def template(name: str, profile: str, count: int = 1) -> dict[str, Any]:
    return {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaimTemplate",
            "metadata": {"name": name},
            "spec": {"spec": {"devices": {"requests": [{"name": "mig", "exactly": {
                "deviceClassName": "mig.nvidia.com", "count": count,
                "selectors": [{"cel": {"expression":
                    f"device.attributes['gpu.nvidia.com'].profile == '{profile}'"}}]}}]}}}}


def pod(name: str, claim_template: str, duration: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "annotations": {"dgxsim.io/duration": duration}},
            "spec": {"restartPolicy": "Never", "nodeSelector": {"kubernetes.io/hostname": NODE},
                     "containers": [{"name": "ctr", "image": "ubuntu:24.04",
                                     "resources": {"claims": [{"name": "gpu"}]}}],
                     "resourceClaims": [{"name": "gpu",
                                         "resourceClaimTemplateName": claim_template}]}}


def apply(cluster: Cluster, namespace: str, *objects: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-",
                    stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)}))


def pods(cluster: Cluster, namespace: str) -> list[dict[str, Any]]:
    return list(cluster.kubectl_json("get", "pods", "-n", namespace)["items"])


def phases(cluster: Cluster, namespace: str) -> Counter[str]:
    return Counter(p.get("status", {}).get("phase") for p in pods(cluster, namespace))


def mig_layout(cluster: Cluster) -> dict[int, list[tuple[str, int]]]:
    """GPU -> (profile, start) of its MIG devices, from the node's inventory."""
    layout: dict[int, list[tuple[str, int]]] = {}
    for device in cluster.inventory(NODE).devices:
        if device.kind == "mig" and device.mig is not None:
            layout.setdefault(device.gpu_index, []).append(
                (str(device.profile), device.mig.memory_start))
    return {g: sorted(v, key=lambda x: x[1]) for g, v in layout.items()}


def instances(cluster: Cluster, count: int) -> dict[int, list[tuple[str, int]]]:
    """The MIG layout once the node's inventory lists ``count`` instances: the node
    reports its layout within a debounce of the change, independently of the pods'
    status, so a pod seen Running may come just before the layout it runs on."""
    def listed() -> dict[int, list[tuple[str, int]]] | None:
        layout = mig_layout(cluster)
        return layout if sum(len(v) for v in layout.values()) == count else None

    found: dict[int, list[tuple[str, int]]] = wait_for(
        f"{count} MIG instances in the node's inventory", listed, 30.0)
    return found


def test_slices_are_published_with_counters(control_plane: Cluster, agent: AgentProcess
                                            ) -> None:
    def whole_pool() -> list[dict[str, Any]] | None:
        # The slices are written one after another: wait for the pool to be complete.
        found = [s for s in control_plane.kubectl_json("get", "resourceslices")["items"]
                 if s["spec"].get("nodeName") == NODE
                 or s["spec"]["pool"]["name"] == NODE]
        wanted = {s["spec"]["pool"]["resourceSliceCount"] for s in found}
        return found if found and wanted == {len(found)} else None

    slices = wait_for("the node's complete pool of ResourceSlices", whole_pool, TIMEOUT_S)
    assert len(slices) == 9
    counters = [s for s in slices if s["spec"].get("sharedCounters")]
    assert len(counters) == 1 and len(counters[0]["spec"]["sharedCounters"]) == 8
    assert all(s["spec"]["pool"]["resourceSliceCount"] == 9 for s in slices)
    assert all(s["metadata"]["ownerReferences"][0]["name"] == NODE for s in slices)
    classes = {c["metadata"]["name"] for c in
               control_plane.kubectl_json("get", "deviceclasses")["items"]}
    assert {"gpu.nvidia.com", "mig.nvidia.com"} <= classes


def test_seven_1g5gb_claims_share_a_gpu_and_an_eighth_takes_another(
        control_plane: Cluster, agent: AgentProcess, namespace: str) -> None:
    apply(control_plane, namespace, template("one-1g5gb", "1g.5gb"),
          *(pod(f"small-{i}", "one-1g5gb", "25s") for i in range(8)))
    wait_for("eight pods running", lambda: phases(control_plane, namespace)["Running"] == 8,
             TIMEOUT_S)
    layout = instances(control_plane, 8)
    sizes = sorted(len(v) for v in layout.values())
    assert sizes == [1, 7], layout
    full = next(v for v in layout.values() if len(v) == 7)
    assert full == [("1g.5gb", s) for s in range(7)], "one instance on each of the driver's slots"
    running = pods(control_plane, namespace)
    uuids = {p["metadata"]["annotations"]["dgxsim.io/env.ctr.NVIDIA_VISIBLE_DEVICES"]
             for p in running}
    assert len(uuids) == 8 and all(u.startswith("MIG-") for u in uuids)
    assert all("nvidia.com/mig-1g.5gb" in p["metadata"]["annotations"]["dgxsim.io/devices"]
               for p in running)
    claims = control_plane.kubectl_json("get", "resourceclaims", "-n", namespace)["items"]
    reported = {c["status"]["devices"][0]["data"]["uuid"] for c in claims
                if (c.get("status") or {}).get("devices")}
    assert reported == uuids, "each claim's device status names its MIG device"
    wait_for("all pods done", lambda: phases(control_plane, namespace)["Succeeded"] == 8,
             TIMEOUT_S)
    wait_for("the instances gone", lambda: mig_layout(control_plane) == {}, TIMEOUT_S)
    gpus = control_plane.inventory(NODE).gpus
    assert all(g.mig_mode == "Disabled" for g in gpus), "every GPU is whole again"


def test_a_4g_and_three_1g_share_one_gpu(control_plane: Cluster, agent: AgentProcess,
                                         namespace: str) -> None:
    apply(control_plane, namespace, template("one-4g", "4g.20gb"),
          template("one-1g", "1g.5gb"), pod("big", "one-4g", "20s"),
          *(pod(f"small-{i}", "one-1g", "20s") for i in range(3)))
    wait_for("four pods running", lambda: phases(control_plane, namespace)["Running"] == 4,
             TIMEOUT_S)
    layout = instances(control_plane, 4)
    profiles = sorted(Counter(p for v in layout.values() for p, _ in v).items())
    assert profiles == [("1g.5gb", 3), ("4g.20gb", 1)]
    assert len(layout) in (1, 2)
    for slots in layout.values():
        taken: set[int] = set()
        for profile, start in slots:
            size = 4 if profile == "4g.20gb" else 1
            span = set(range(start, start + size))
            assert not span & taken, slots
            taken |= span
    wait_for("all pods done", lambda: phases(control_plane, namespace)["Succeeded"] == 4,
             TIMEOUT_S)


def test_a_claim_no_slot_can_satisfy_stays_pending_with_the_schedulers_reason(
        control_plane: Cluster, agent: AgentProcess, namespace: str) -> None:
    apply(control_plane, namespace, template("nine-7g", "7g.40gb", count=9),
          pod("too-big", "nine-7g", "10s"))

    def unschedulable() -> str | None:
        status = control_plane.kubectl_json("get", "pod", "too-big", "-n", namespace)["status"]
        for condition in status.get("conditions") or []:
            if condition["type"] == "PodScheduled" and condition.get("reason") == "Unschedulable":
                return str(condition.get("message"))
        return None

    message = wait_for("the pod unschedulable", unschedulable, TIMEOUT_S)
    assert "claim" in message, message
    assert phases(control_plane, namespace) == Counter({"Pending": 1})


def _not_scheduled(cluster: Cluster, namespace: str, name: str) -> str | None:
    """Why the scheduler did not place the pod (``reason: message``), once it says so: a
    claim no device satisfies is ``Unschedulable``, a selector that fails to evaluate
    a ``SchedulerError``."""
    status = cluster.kubectl_json("get", "pod", name, "-n", namespace)["status"]
    for condition in status.get("conditions") or []:
        if condition["type"] == "PodScheduled" and condition.get("status") == "False" and (
                condition.get("message")):
            return f"{condition.get('reason')}: {condition['message']}"
    return None


def test_bad_claims_stay_pending_and_disturb_nothing(control_plane: Cluster,
                                                     agent: AgentProcess,
                                                     namespace: str) -> None:
    unknown_class = template("unknown-class", "1g.5gb")
    unknown_class["spec"]["spec"]["devices"]["requests"][0]["exactly"]["deviceClassName"] = (
        "no-such-class.example.com")
    missing_attribute = template("missing-attribute", "1g.5gb")
    missing_attribute["spec"]["spec"]["devices"]["requests"][0]["exactly"]["selectors"] = [
        {"cel": {"expression": "device.attributes['gpu.nvidia.com'].noSuchAttribute == 'x'"}}]
    apply(control_plane, namespace, unknown_class, missing_attribute,
          template("good", "2g.10gb"), pod("no-class", "unknown-class", "5s"),
          pod("no-attribute", "missing-attribute", "5s"), pod("good", "good", "5s"))
    no_class = wait_for("no-class refused", lambda: _not_scheduled(
        control_plane, namespace, "no-class"), TIMEOUT_S)
    assert "no-such-class.example.com" in no_class, no_class
    no_attribute = wait_for("no-attribute refused", lambda: _not_scheduled(
        control_plane, namespace, "no-attribute"), TIMEOUT_S)
    assert "no such key: noSuchAttribute" in no_attribute, no_attribute
    wait_for("the good pod done", lambda: control_plane.kubectl_json(
        "get", "pod", "good", "-n", namespace)["status"].get("phase") == "Succeeded", TIMEOUT_S)
    assert phases(control_plane, namespace) == Counter({"Pending": 2, "Succeeded": 1})
    wait_for("its instance gone", lambda: mig_layout(control_plane) == {}, TIMEOUT_S)


def test_an_agent_restart_keeps_prepared_claims_and_prepares_nothing_twice(
        control_plane: Cluster, agent: AgentProcess, namespace: str) -> None:
    apply(control_plane, namespace, template("kept", "3g.20gb"),
          *(pod(f"kept-{i}", "kept", "40s") for i in range(3)))
    wait_for("three pods running", lambda: phases(control_plane, namespace)["Running"] == 3,
             TIMEOUT_S)
    before = instances(control_plane, 3)
    devices = {p["metadata"]["name"]: p["metadata"]["annotations"]["dgxsim.io/devices"]
               for p in pods(control_plane, namespace)}
    prepared = agent.log.read_text().count(": prepared claim")
    agent.stop()
    agent.start()
    assert mig_layout(control_plane) == before
    assert {p["metadata"]["name"]: p["metadata"]["annotations"]["dgxsim.io/devices"]
            for p in pods(control_plane, namespace)} == devices
    assert phases(control_plane, namespace) == Counter({"Running": 3})
    wait_for("all pods done", lambda: phases(control_plane, namespace)["Succeeded"] == 3,
             TIMEOUT_S)
    wait_for("the instances gone", lambda: mig_layout(control_plane) == {}, TIMEOUT_S)
    log = agent.log.read_text()
    assert log.count(": prepared claim") == prepared, "a claim was prepared again"
    assert log.count(": unprepared claim") >= 3


def test_an_xid_taints_the_gpus_devices_in_its_slice_until_cleared(
        control_plane: Cluster, agent: AgentProcess) -> None:
    def tainted() -> set[str]:
        return {d["name"] for s in control_plane.kubectl_json("get", "resourceslices")["items"]
                if s["spec"].get("nodeName") == NODE for d in s["spec"].get("devices") or []
                if any(t["key"] == "gpu.nvidia.com/xid" and t["value"] == "79"
                       and t["effect"] == "NoSchedule" for t in d.get("taints") or [])}

    where = ("--state-dir", str(agent.state_dir), "--node", NODE, "--gpu", "5")
    injected = dgxsim("fault", "inject", *where, "--xid", "79")
    assert injected.returncode == 0, injected.stderr
    names = wait_for("GPU 5's devices tainted", lambda: tainted() or None, TIMEOUT_S)
    assert "gpu-5" in names and "gpu-5-mig-7g40gb-0-0" in names
    assert all(n.startswith("gpu-5") for n in names) and len(names) == 26
    cleared = dgxsim("fault", "clear", *where)
    assert cleared.returncode == 0, cleared.stderr
    wait_for("the taints gone", lambda: not tainted(), TIMEOUT_S)


def test_the_performance_model_times_a_pod_on_the_mig_device_its_claim_got(
        control_plane: Cluster, agent: AgentProcess, namespace: str) -> None:
    from dgxnode.agent.workload import parse_workload
    from dgxnode.prediction import predictor_for

    workload = json.dumps({"workload": "gemm", "steps": 50000, "precision": "fp16",
                           "params": {"m": 4096, "n": 4096, "k": 4096}})
    timed = pod("timed", "one-3g", "1s")
    timed["metadata"]["annotations"] = {"dgxsim.io/workload": workload}
    apply(control_plane, namespace, template("one-3g", "3g.20gb"), timed)

    def predicted() -> dict[str, str] | None:
        meta = control_plane.kubectl_json("get", "pod", "timed", "-n", namespace)["metadata"]
        annotations = meta.get("annotations") or {}
        return annotations if "dgxsim.io/predicted-duration-s" in annotations else None

    annotations = wait_for("the pod timed", predicted, TIMEOUT_S)
    device = annotations["dgxsim.io/env.ctr.NVIDIA_VISIBLE_DEVICES"]
    step_s = predictor_for("a100-40gb")(parse_workload(workload),
                                        {"nvidia.com/mig-3g.20gb": (device,)})
    assert float(annotations["dgxsim.io/predicted-duration-s"]) == pytest.approx(
        50000 * step_s, abs=1e-3)
    whole_s = predictor_for("a100-40gb")(parse_workload(workload), {"nvidia.com/gpu": ("x",)})
    assert step_s > whole_s, "three sevenths of a GPU run slower than the whole"
    listed = dgxsim("nvidia-smi", "--state-dir", str(agent.state_dir), "--node", NODE, "-L")
    assert device in listed.stdout and "MIG 3g.20gb" in listed.stdout, listed.stdout
    control_plane.kubectl("delete", "pod", "timed", "-n", namespace, "--wait=true")
    wait_for("its instance gone", lambda: mig_layout(control_plane) == {}, TIMEOUT_S)
