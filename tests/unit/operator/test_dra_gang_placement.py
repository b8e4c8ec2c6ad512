"""Gang placement on DRA nodes: free devices from ResourceSlices minus allocated claims."""

from __future__ import annotations

import json
import random
from typing import Any

from dgxnode.node import SimNode
from gpumodel.dra import mig_device_name, slice_specs, slots
from gpumodel.errors import PlacementError
from gpumodel.mig import profile_table
from gpumodel.vocabulary import DRA_DRIVER, DraMode
from migoperator.apply.claims import CLAIM, claim_template
from migoperator.apply.jobs import pod_body, promised_dra_devices
from migoperator.models import DGXJobSpec, ReplicaPlacement
from migoperator.planning.dra_pools import DraPool, dra_key, dra_pools
from migoperator.planning.job_placer import (
    JobRequest,
    NodeCapacity,
    Placement,
    Unplaced,
    job_request_of,
    node_capacities,
    place_jobs,
)
from migoperator.planning.slices import Instance, place_all
from migoperator.planning.views import NodeView, job_request

JSON = dict[str, Any]
WHOLE = dra_key(None)
ONE_G = dra_key("1g.5gb")


def slices(node: SimNode, mode: DraMode, generation: int = 1) -> list[JSON]:
    specs = slice_specs(node.inventory(), mode)
    return [{"metadata": {"name": f"{node.name}-{i}"},
             "spec": {**s, "pool": {"name": node.name, "generation": generation,
                                    "resourceSliceCount": len(specs)}}}
            for i, s in enumerate(specs)]


def claim(pool: str, *devices: str) -> JSON:
    return {"status": {"allocation": {"devices": {"results": [
        {"request": CLAIM, "driver": DRA_DRIVER, "pool": pool, "device": d}
        for d in devices]}}}}


def pool_of(mode: DraMode, *taken: str, name: str = "dgx-0") -> DraPool:
    node = SimNode.create(name)
    return dra_pools(slices(node, mode), [claim(name, *taken)] if taken else [])[name]


def dra_job(key: str, replicas: int, per: int = 1, profile: str | None = None) -> JobRequest:
    return JobRequest(key=key, resource=dra_key(profile), per_replica=per, replicas=replicas,
                      dra=True)


def capacity(pool: DraPool) -> NodeCapacity:
    return NodeCapacity(name=pool.node, free=pool.free(), pool=pool)


def mig_name(profile: str, start: int, gpu: int = 0) -> str:
    return mig_device_name(gpu, profile_table("a100-40gb").get(profile), start)


# ------------------------------------------------------------ what is free


def test_static_pool_counts_untaken_untainted_whole_gpus() -> None:
    node = SimNode.create("dgx-0")
    node.set_health(str(node.hardware.gpu(7).uuid), healthy=False, xid=79)
    pools = dra_pools(slices(node, "static"), [claim("dgx-0", "gpu-0", "gpu-3")])
    assert pools["dgx-0"].free() == {WHOLE: 5}


def test_claims_of_other_drivers_and_older_pool_generations_are_ignored() -> None:
    node = SimNode.create("dgx-0")
    stale = [{**s, "spec": {**s["spec"], "devices": []}} for s in slices(node, "static", 1)]
    other = {"status": {"allocation": {"devices": {"results": [
        {"driver": "example.com", "pool": "dgx-0", "device": "gpu-1"}]}}}}
    pools = dra_pools(stale + slices(node, "static", 2), [other])
    assert pools["dgx-0"].available(WHOLE) == 8


def test_dynamic_pool_of_empty_gpus_offers_every_profile_and_whole_gpus() -> None:
    free = pool_of("dynamic").free()
    assert free[WHOLE] == 8
    assert free[ONE_G] == 56
    assert free[dra_key("2g.10gb")] == 24
    assert free[dra_key("3g.20gb")] == 16
    assert free[dra_key("4g.20gb")] == 8 and free[dra_key("7g.40gb")] == 8


def test_a_claimed_mig_slot_takes_its_gpu_from_whole_gpu_claims_and_its_slices() -> None:
    free = pool_of("dynamic", mig_name("1g.5gb", 0)).free()
    assert free[WHOLE] == 7
    assert free[ONE_G] == 55
    assert free[dra_key("4g.20gb")] == 7  # 4g.20gb only starts at slice 0
    assert free[dra_key("3g.20gb")] == 15  # the one at slice 4 still fits
    assert free[dra_key("7g.40gb")] == 7


def test_a_claimed_whole_gpu_takes_every_slot_of_it() -> None:
    free = pool_of("dynamic", "gpu-2").free()
    assert free[WHOLE] == 7 and free[ONE_G] == 49


def test_free_counts_on_one_gpu_equal_what_the_mig_rules_still_accept() -> None:
    """For random layouts the MIG engine accepted, the number of each profile the counters
    still allow equals the most the operator's exact MIG placement can add."""
    table = profile_table("a100-40gb")
    rng = random.Random(7)
    every = slots(table)
    for _ in range(60):
        node = SimNode.create("dgx-0")
        node.set_mig_mode(0, True)
        node.reset_gpu(0)
        placed: list[Instance] = []
        for profile, start in rng.sample(every, rng.randint(1, 6)):
            try:
                node.create_gi(0, profile.name, start)
            except PlacementError:
                continue
            placed.append(Instance(profile.name, start, profile.memory_slices))
        taken = [mig_name(i.profile, i.start) for i in placed]
        fresh = SimNode.create("dgx-0")  # published with MIG off, as dynamic mode keeps it
        pool = dra_pools(slices(fresh, "dynamic"), [claim("dgx-0", *taken)])["dgx-0"]
        gpu0 = DraPool(pool.node, tuple(d for d in pool.devices
                                        if d.name == "gpu-0" or d.name.startswith("gpu-0-")),
                       pool.counters)
        for profile in table.profiles:
            most = 0
            while place_all(table, placed, [profile.name] * (most + 1)) is not None:
                most += 1
            assert gpu0.available(dra_key(profile.name)) == most, (placed, profile.name)


# ------------------------------------------------------------ gangs


def test_a_two_replica_whole_gpu_gang_goes_to_two_static_dra_nodes() -> None:
    nodes = [capacity(pool_of("static", name=n)) for n in ("dgx-0", "dgx-1")]
    (result,) = place_jobs([dra_job("ns/train", 2, per=8)], nodes)
    assert result == Placement("ns/train", ("dgx-0", "dgx-1"))


def test_a_gang_that_does_not_fit_on_dra_nodes_takes_nothing() -> None:
    nodes = [capacity(pool_of("static", name="dgx-0")),
             capacity(pool_of("static", "gpu-0", name="dgx-1"))]
    first, second = place_jobs([dra_job("ns/big", 2, per=8), dra_job("ns/small", 1, per=7)],
                               nodes)
    assert isinstance(first, Unplaced)
    assert "needs 2 replica(s) of 8 gpu.nvidia.com; free nodes hold 1" in first.reason
    assert isinstance(second, Placement)  # the big gang left everything to the next job


def test_dra_jobs_skip_device_plugin_nodes_and_the_other_way_round() -> None:
    plugin = NodeCapacity(name="dp-0", free={"nvidia.com/gpu": 8, WHOLE: 8})
    dra = capacity(pool_of("static", name="dra-0"))
    plain = JobRequest(key="ns/plain", resource="nvidia.com/gpu", per_replica=8, replicas=1)
    claimed = dra_job("ns/claimed", 1, per=8)
    results = place_jobs([plain, claimed], [plugin, dra])
    assert set(results) == {Placement("ns/plain", ("dp-0",)),
                            Placement("ns/claimed", ("dra-0",))}
    (alone,) = place_jobs([claimed], [plugin])
    assert isinstance(alone, Unplaced) and "no node has 8 free gpu.nvidia.com" in alone.reason


def test_jobs_of_one_round_share_a_dynamic_nodes_counters() -> None:
    """A MIG replica placed first leaves seven whole GPUs, so an 8-GPU replica waits."""
    node = capacity(pool_of("dynamic"))
    mig = JobRequest(key="ns/a", resource=ONE_G, per_replica=1, replicas=7, dra=True,
                     priority=1)
    results = place_jobs([mig, dra_job("ns/b", 1, per=8), dra_job("ns/c", 1, per=7)], [node])
    assert results[0] == Placement("ns/a", ("dgx-0",) * 7)
    assert isinstance(results[1], Unplaced)
    assert results[2] == Placement("ns/c", ("dgx-0",))


def test_replicas_promised_but_not_bound_count_as_taken() -> None:
    pools = {"dgx-0": pool_of("static"), "dgx-1": pool_of("static", name="dgx-1")}
    views = [NodeView(name=n, device="a100-40gb", gpus=()) for n in pools]
    caps = node_capacities(views, pools, [("dgx-0", WHOLE, 8), ("dgx-1", WHOLE, 2)])
    assert [c.free.get(WHOLE, 0) for c in caps] == [0, 6]
    (result,) = place_jobs([dra_job("ns/x", 1, per=8)], caps)
    assert isinstance(result, Unplaced)


# ------------------------------------------------------------ the job's objects


def job_object(phase: str = "Pending", **spec: Any) -> JSON:
    return {"metadata": {"name": "train", "namespace": "ns", "uid": "u-1",
                         "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"workload": "gemm", "allocation": "DRA", **spec},
            "status": {"phase": phase, "gpus": "2x8"}}


def test_a_dra_job_asks_for_the_class_and_is_not_a_partitioning_request() -> None:
    job = job_object(replicas=2, gpusPerReplica=8)
    spec = DGXJobSpec.model_validate(job["spec"])
    request = job_request_of("ns/train", spec, 0.0)
    assert (request.resource, request.per_replica, request.dra) == (WHOLE, 8, True)
    assert spec.devices == "gpu.nvidia.com"
    assert job_request(job) is None


def test_the_template_asks_nvidias_classes_and_the_pod_is_pinned_and_claims_from_it() -> None:
    job = job_object(replicas=2, gpusPerReplica=4)
    spec = DGXJobSpec.model_validate(job["spec"])
    template = claim_template(job, spec)
    assert template["apiVersion"] == "resource.k8s.io/v1"
    assert template["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert template["spec"]["spec"]["devices"]["requests"] == [{"name": CLAIM, "exactly": {
        "deviceClassName": "gpu.nvidia.com", "allocationMode": "ExactCount", "count": 4}}]
    pod = pod_body(job, spec, ReplicaPlacement(replica=1, node="dgx-1", pod="train-r1"), 5.0,
                   "dgxsim-scheduler")
    assert "schedulerName" not in pod["spec"]
    assert pod["spec"]["resourceClaims"] == [{"name": CLAIM,
                                              "resourceClaimTemplateName": "train"}]
    assert pod["spec"]["containers"][0]["resources"] == {"claims": [{"name": CLAIM}]}
    terms = pod["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms == [{"matchFields": [{"key": "metadata.name", "operator": "In",
                                       "values": ["dgx-1"]}]}]
    mig = job_object(replicas=3, migProfile="1g.5gb")
    requests = claim_template(mig, DGXJobSpec.model_validate(mig["spec"]))["spec"]["spec"][
        "devices"]["requests"]
    assert requests[0]["exactly"]["deviceClassName"] == "mig.nvidia.com"
    assert requests[0]["exactly"]["selectors"] == [{"cel": {"expression": (
        "device.attributes['gpu.nvidia.com'].profile == '1g.5gb'")}}]


def test_a_device_plugin_job_keeps_its_bound_pod() -> None:
    job = job_object(replicas=1, gpusPerReplica=2)
    job["spec"].pop("allocation")
    pod = pod_body(job, DGXJobSpec.model_validate(job["spec"]),
                   ReplicaPlacement(replica=0, node="dgx-0", pod="train-r0"), 5.0, "dgxsim")
    assert pod["spec"]["schedulerName"] == "dgxsim"
    assert pod["spec"]["containers"][0]["resources"] == {"limits": {"nvidia.com/gpu": "2"}}
    assert "resourceClaims" not in json.dumps(pod)


def test_promised_devices_are_the_placed_replicas_without_a_bound_pod() -> None:
    job = job_object("Scheduled", replicas=2, gpusPerReplica=8)
    job["status"]["placement"] = [{"replica": 0, "node": "dgx-0", "pod": "train-r0"},
                                  {"replica": 1, "node": "dgx-1", "pod": "train-r1"}]
    pods = [{"metadata": {"name": "train-r0", "namespace": "ns"}, "spec": {"nodeName": "dgx-0"}},
            {"metadata": {"name": "train-r1", "namespace": "ns"}, "spec": {}}]
    assert promised_dra_devices([job], pods) == [("dgx-1", WHOLE, 8)]
    assert promised_dra_devices([job_object(replicas=2, gpusPerReplica=8)], pods) == []
