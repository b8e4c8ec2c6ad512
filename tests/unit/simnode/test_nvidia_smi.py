"""nvidia-smi emulation: NVIDIA's layouts, wording and exit codes on a simulated node."""

from __future__ import annotations

import io

from dgxnode.node import SimNode
from dgxnode.nvidia_smi import run


def smi(node: SimNode, *args: str) -> tuple[int, list[str]]:
    out = io.StringIO()
    code = run(node, args, out)
    return code, out.getvalue().splitlines()


def mig_node() -> SimNode:
    node = SimNode.create("node-a")
    for i in range(8):
        node.set_mig_mode(i, True)
        node.reset_gpu(i)
    return node


def test_list_gpus_and_mig_devices() -> None:
    node = mig_node()
    node.create_gi(0, "3g.20gb", default_ci=True)
    node.create_gi(0, "1g.5gb", default_ci=True)
    code, lines = smi(node, "-L", "-i", "0")
    assert code == 0
    assert lines[0] == f"GPU 0: NVIDIA A100-SXM4-40GB (UUID: {node.hardware.gpu(0).uuid})"
    uuids = [d.uuid for d in node.mig_devices(0)]
    assert lines[1:] == [f"  MIG 3g.20gb     Device  0: (UUID: {uuids[0]})",
                         f"  MIG 1g.5gb      Device  1: (UUID: {uuids[1]})"]


def test_lgip_rows_match_nvidia_layout() -> None:
    node = mig_node()
    node.create_gi(0, "3g.20gb")
    code, lines = smi(node, "mig", "-lgip", "-i", "0")
    assert code == 0
    assert lines[:5] == [
        "+-----------------------------------------------------------------------------+",
        "| GPU instance profiles:                                                      |",
        "| GPU   Name             ID    Instances   Memory     P2P    SM    DEC   ENC  |",
        "|                              Free/Total   GiB              CE    JPEG  OFA  |",
        "|=============================================================================|"]
    assert "|   0  MIG 1g.5gb        19     4/7        4.75       No     14     0     0   |" \
        in lines
    assert "|   0  MIG 3g.20gb        9     1/2        19.62      No     42     2     0   |" \
        in lines
    assert "|   0  MIG 7g.40gb        0     0/1        39.50      No     98     5     0   |" \
        in lines
    assert "|                                                             7     1     1   |" \
        in lines
    assert all(len(line) == 79 for line in lines)


def test_lgipp() -> None:
    _, lines = smi(mig_node(), "mig", "-lgipp", "-i", "1")
    assert lines == ["GPU  1 Profile ID 19 Placements: {0,1,2,3,4,5,6}:1",
                     "GPU  1 Profile ID 20 Placements: {0,1,2,3,4,5,6}:1",
                     "GPU  1 Profile ID 15 Placements: {0,2,4,6}:2",
                     "GPU  1 Profile ID 14 Placements: {0,2,4}:2",
                     "GPU  1 Profile ID  9 Placements: {0,4}:4",
                     "GPU  1 Profile ID  5 Placement : {0}:4",
                     "GPU  1 Profile ID  0 Placement : {0}:8"]


def test_cgi_order_dependence_with_nvidia_wording() -> None:
    node = mig_node()
    code, lines = smi(node, "mig", "-i", "0", "-cgi", "19,19,14,9")
    assert code == 255
    assert lines == [
        "Successfully created GPU instance ID 13 on GPU  0 using profile MIG 1g.5gb (ID 19)",
        "Successfully created GPU instance ID 11 on GPU  0 using profile MIG 1g.5gb (ID 19)",
        "Successfully created GPU instance ID  3 on GPU  0 using profile MIG 2g.10gb (ID 14)",
        "Unable to create a GPU instance on GPU  0 using profile 9: Insufficient Resources",
        "Failed to create GPU instances: Insufficient Resources"]
    code, lines = smi(node, "mig", "-i", "1", "-cgi", "9,19,14,19", "-C")
    assert code == 0
    assert lines[0] == ("Successfully created GPU instance ID  2 on GPU  1 using profile MIG "
                        "3g.20gb (ID  9)")
    assert lines[1] == ("Successfully created compute instance ID  0 on GPU  1 GPU instance ID "
                        " 2 using profile MIG 3g.20gb (ID  2)")
    _, lgi = smi(node, "mig", "-lgi", "-i", "1")
    assert lgi[5:] == [
        "|   1  MIG 1g.5gb          19        7          0:1     |",
        "+-------------------------------------------------------+",
        "|   1  MIG 1g.5gb          19        8          1:1     |",
        "+-------------------------------------------------------+",
        "|   1  MIG 2g.10gb         14        4          2:2     |",
        "+-------------------------------------------------------+",
        "|   1  MIG 3g.20gb          9        2          4:4     |",
        "+-------------------------------------------------------+"]


def test_lci_and_teardown_order() -> None:
    node = mig_node()
    smi(node, "mig", "-i", "0", "-cgi", "3g.20gb")
    code, lines = smi(node, "mig", "-i", "0", "-cci", "0,0,0", "-gi", "2")
    assert code == 0 and lines[2].endswith("using profile MIG 1c.3g.20gb (ID  0)")
    _, lci = smi(node, "mig", "-lci", "-i", "0")
    assert "|   0      2       MIG 1c.3g.20gb       0         2          2:1     |" in lci
    code, lines = smi(node, "mig", "-dgi", "-i", "0")
    assert (code, lines) == (255, [
        "Unable to destroy GPU instance ID  2 from GPU  0: In use by another client",
        "Failed to destroy GPU instances: In use by another client"])
    assert smi(node, "mig", "-dci", "-i", "0")[0] == 0
    assert smi(node, "mig", "-dgi", "-i", "0") == (
        0, ["Successfully destroyed GPU instance ID  2 from GPU  0"])
    assert smi(node, "mig", "-lgi", "-i", "0") == (6, ["No GPU instances found: Not Found"])


def test_allocated_device_is_in_use() -> None:
    node = mig_node()
    gi = node.create_gi(0, "2g.10gb", default_ci=True)
    node.allocate(node.mig_devices(0)[0].uuid, "ns/p/c")
    code, lines = smi(node, "mig", "-dci", "-i", "0")
    assert code == 255 and "In use by another client" in lines[0]
    assert node.state.gpu(0).gi(gi.gi_id) is not None


def test_mig_disabled_node() -> None:
    node = SimNode.create("n")
    assert smi(node, "mig", "-lgi") == (6, ["No MIG-enabled devices found."])
    assert smi(node, "mig", "-lgip")[0] == 6
    code, lines = smi(node, "-i", "2", "-mig", "1")
    assert code == 0 and lines == ["Enabled MIG Mode for GPU 00000000:47:00.0", "All done."]
    assert node.state.gpu(2).mig_enabled


def test_query_gpu_csv() -> None:
    node = mig_node()
    code, lines = smi(node, "--query-gpu=index,name,memory.total,mig.mode.current",
                      "--format=csv", "-i", "0,7")
    assert code == 0
    assert lines == ["index, name, memory.total [MiB], mig.mode.current",
                     "0, NVIDIA A100-SXM4-40GB, 40960 MiB, Enabled",
                     "7, NVIDIA A100-SXM4-40GB, 40960 MiB, Enabled"]
    _, lines = smi(node, "--query-gpu", "uuid,memory.total", "--format",
                   "csv,noheader,nounits", "-i", "3")
    assert lines == [f"{node.hardware.gpu(3).uuid}, 40960"]
    assert smi(node, "--query-gpu=index,bogus", "--format=csv") == (
        2, ['Field "bogus" is not a valid field to query.'])
    assert smi(node, "-L", "-i", "9") == (6, ["No devices were found"])


def test_topo_matrix() -> None:
    code, lines = smi(SimNode.create("n"), "topo", "-m")
    assert code == 0
    header = lines[0].split("\t")
    assert header[1:9] == [f"GPU{i}" for i in range(8)]
    assert header[9:19] == [f"mlx5_{i}" for i in range(10)]
    assert header[19:] == ["CPU Affinity", "NUMA Affinity"]
    gpu0 = lines[1].split("\t")
    assert gpu0[:10] == ["GPU0", " X ", *["NV12"] * 7, "PXB"]
    assert gpu0[-2:] == ["48-63,176-191", "3"]
    assert lines[7].split("\t")[-2:] == ["80-95,208-223", "5"]
    assert "  NV#  = Connection traversing a bonded set of # NVLinks" in lines
    rows = {line.split("\t")[0]: line.split("\t") for line in lines[1:19]}
    storage = header.index("mlx5_5")
    assert rows["mlx5_4"][storage] == "PIX", "the two ports of the storage card"
    assert rows["mlx5_4"][header.index("mlx5_0")] == "SYS"


def test_no_command_prints_the_r535_summary_of_every_gpu() -> None:
    node = SimNode.create("node-a")
    code, lines = smi(node)
    assert code == 0
    assert all(len(line) == 89 for line in lines[1:])
    assert lines[2] == ("| NVIDIA-SMI 535.183.06             Driver Version: 535.183.06   "
                        "CUDA Version: 12.2     |")
    assert lines[4:7] == [
        "| GPU  Name                 Persistence-M | Bus-Id        Disp.A | Volatile Uncorr. ECC |",
        "| Fan  Temp   Perf          Pwr:Usage/Cap |         Memory-Usage | GPU-Util  Compute M. |",
        "|                                         |                      |               MIG M. |"]
    bus = node.hardware.gpu(0).pci_bus_id
    assert lines[8:11] == [
        f"|   0  NVIDIA A100-SXM4-40GB          On  | {bus} Off |                    0 |",
        "| N/A   32C    P0              52W / 400W |      0MiB / 40960MiB |      0%      Default |",
        "|                                         |                      |             Disabled |"]
    assert sum(line.startswith("|   ") and "NVIDIA A100" in line for line in lines) == 8
    assert "MIG devices:" not in "\n".join(lines)
    assert lines[-2:] == [
        "|  No running processes found                                                           |",
        "+---------------------------------------------------------------------------------------+"]


def test_the_summary_lists_mig_devices_and_pending_modes() -> None:
    node = SimNode.create("node-a")
    node.apply("all-balanced")
    node.set_mig_mode(0, False)  # waits for a reset
    code, lines = smi(node, "-i", "0")
    assert code == 0 and all(len(line) == 89 for line in lines[1:] if line)
    assert lines[10] == ("|                                         |                      |"
                         "            Disabled* |")
    start = lines.index("|==================+================================+===========+"
                        "=======================|")
    assert lines[start + 1:start + 4] == [
        "|  0    2   0   0  |               0MiB / 20096MiB  | 42      0 |  3   0    2    0    0 |",
        "|                  |               0MiB / 32767MiB  |           |                       |",
        "+------------------+--------------------------------+-----------+-----------------------+"]
    rows = [line for line in lines if line.startswith("|  0 ")]
    assert [row.split("|")[1].split() for row in rows] == [
        ["0", "2", "0", "0"], ["0", "3", "0", "1"], ["0", "9", "0", "2"], ["0", "10", "0", "3"]]
    assert rows[-1].split("|")[2].split() == ["0MiB", "/", "4864MiB"]


def test_a_gpu_in_mig_mode_without_instances_has_no_mig_devices() -> None:
    node = SimNode.create("node-a")
    node.set_mig_mode(3, True)
    node.reset_gpu(3)
    code, lines = smi(node, "-i", "3")
    assert code == 0
    assert lines[8].endswith("|                   On |")
    assert ("|  No MIG devices found                                                              "
            "   |") in lines
