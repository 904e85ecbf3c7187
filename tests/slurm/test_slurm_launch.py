"""The torchrun launcher of multi-GPU pretraining: command built, GPUs read from a SLURM job's
environment, and a real 2-process CPU (gloo) run through `rnaret launch`."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from rnaret.train.launch import gpus_from_env, resolve_nproc, torchrun_command

# Environments recorded inside jobs of the test cluster (tests/slurm_cluster, 2 fake GPUs):
# the batch script of `sbatch --gpus=2`, and the step `srun -n1 --gpus=1` the Snakemake plugin
# runs inside it. The step's own GPUs must win over the job's.
BATCH_ENV = {
    "CUDA_VISIBLE_DEVICES": "0,1",
    "GPU_DEVICE_ORDINAL": "0,1",
    "SLURM_GPUS": "2",
    "SLURM_GPUS_ON_NODE": "2",
    "SLURM_JOB_GPUS": "0,1",
}
STEP_ENV = {
    "CUDA_VISIBLE_DEVICES": "0",
    "GPU_DEVICE_ORDINAL": "0",
    "SLURM_GPUS": "2",
    "SLURM_GPUS_ON_NODE": "1",
    "SLURM_JOB_GPUS": "0,1",
    "SLURM_STEP_GPUS": "0",
}


def _env(**extra: str) -> dict[str, str]:
    """This process's environment without any GPU variable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "CUDA_VISIBLE"))}
    env.update(extra)
    return env


@pytest.mark.parametrize("nproc", [1, 2, 4])
def test_torchrun_command_starts_one_worker_per_gpu(nproc):
    cmd = torchrun_command(nproc, ["pretrain", "--config", "run config.yaml"])
    assert cmd == [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc-per-node={nproc}", "-m", "rnaret", "pretrain", "--config", "run config.yaml",
    ]


def test_torchrun_command_with_a_fixed_port_rendezvous_on_loopback():
    cmd = torchrun_command(2, ["ddp-check", "--output", "x.json"], rdzv_port=29517, python="/usr/bin/python3")
    assert cmd[:3] == ["/usr/bin/python3", "-m", "torch.distributed.run"]
    assert "--standalone" not in cmd
    assert {"--nnodes=1", "--rdzv-backend=c10d", "--rdzv-endpoint=127.0.0.1:29517", "--nproc-per-node=2"} <= set(cmd)
    assert cmd[-5:] == ["-m", "rnaret", "ddp-check", "--output", "x.json"]


def test_torchrun_command_rejects_no_workers():
    with pytest.raises(ValueError, match="nproc"):
        torchrun_command(0, ["pretrain"])


@pytest.mark.parametrize(
    "env, expected",
    [
        (BATCH_ENV, 2),
        (STEP_ENV, 1),
        ({"SLURM_STEP_GPUS": "0,1,2,3", "SLURM_GPUS_ON_NODE": "4"}, 4),
        ({"SLURM_GPUS_ON_NODE": "4"}, 4),
        ({"SLURM_JOB_GPUS": "2,3"}, 2),
        ({"SLURM_GPUS_PER_NODE": "a100:4"}, 4),
        ({"SLURM_GPUS_PER_NODE": "a100:2,v100:1"}, 3),
        ({"SLURM_GPUS": "gpu:a100:8"}, 8),
        ({"SLURM_GPUS": "4"}, 4),
        ({"CUDA_VISIBLE_DEVICES": "GPU-8f6e1a2b,GPU-1c2d3e4f"}, 2),
        ({"CUDA_VISIBLE_DEVICES": "0,1,-1,3"}, 2),
        ({"CUDA_VISIBLE_DEVICES": ""}, 0),
        ({"CUDA_VISIBLE_DEVICES": "-1"}, 0),
        ({"SLURM_GPUS_ON_NODE": "(null)", "CUDA_VISIBLE_DEVICES": "0,1,2"}, 3),
        ({}, None),
        ({"SLURM_CPUS_ON_NODE": "8", "SLURM_JOB_ID": "17"}, None),
    ],
)
def test_gpus_from_env_reads_the_allocation(env, expected):
    assert gpus_from_env(env) == expected


def test_resolve_nproc_auto_follows_the_job_and_explicit_counts_win():
    assert resolve_nproc("auto", BATCH_ENV) == 2
    assert resolve_nproc("0", STEP_ENV) == 1
    assert resolve_nproc(0, {"SLURM_GPUS_ON_NODE": "4"}) == 4
    assert resolve_nproc("3", BATCH_ENV) == 3
    assert resolve_nproc(2, {}) == 2
    # no GPU anywhere (CPU torch here): one process
    assert resolve_nproc("auto", {"CUDA_VISIBLE_DEVICES": ""}) == 1
    for bad in ("-1", "two", "1.5", -2):
        with pytest.raises(ValueError):
            resolve_nproc(bad, {})


def test_launch_command_prints_what_it_would_run_in_a_gpu_job():
    out = subprocess.run(
        [sys.executable, "-m", "rnaret", "launch", "--nproc", "auto", "--print-command", "--",
         "pretrain", "--config", "c.yaml"],
        env=_env(**BATCH_ENV), capture_output=True, text=True, check=True,
    ).stdout.splitlines()
    assert out[0] == "2"
    assert out[1].endswith("-m torch.distributed.run --standalone --nproc-per-node=2 -m rnaret pretrain --config c.yaml")


def test_launch_without_a_subcommand_is_an_error():
    proc = subprocess.run(
        [sys.executable, "-m", "rnaret", "launch", "--nproc", "2"],
        env=_env(), capture_output=True, text=True,
    )
    assert proc.returncode == 2
    assert "subcommand after --" in proc.stderr


def test_two_process_gloo_run_through_the_launcher(tmp_path):
    output = tmp_path / "ddp.json"
    proc = subprocess.run(
        [sys.executable, "-m", "rnaret", "launch", "--nproc", "2", "--",
         "ddp-check", "--output", str(output), "--device", "cpu"],
        env=_env(), capture_output=True, text=True, timeout=180, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(output.read_text())
    assert result["world_size"] == 2
    assert result["backend"] == "gloo"
    assert result["sum"] == 3.0 == result["expected_sum"]
    assert result["ranks_seen"] == [1.0, 1.0]
    assert sorted(r["local_rank"] for r in result["ranks"]) == [0, 1]
    assert result["ok"] is True
    # rank 0 alone wrote it, atomically: nothing else left beside it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddp.json"]


def test_one_process_runs_in_place_without_torchrun(tmp_path):
    output = tmp_path / "ddp.json"
    proc = subprocess.run(
        [sys.executable, "-m", "rnaret", "launch", "--nproc", "1", "--", "ddp-check", "--output", str(output)],
        env=_env(), capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(output.read_text())
    assert (result["world_size"], result["backend"], result["sum"]) == (1, "none", 1.0)
    # torchrun would have announced OMP_NUM_THREADS for its workers
    assert "OMP_NUM_THREADS" not in proc.stderr


def test_ddp_check_module_entry_point(tmp_path):
    output = tmp_path / "sub" / "ddp.json"
    subprocess.run(
        [sys.executable, "-m", "rnaret.train.ddp_check", "--output", str(output)],
        env=_env(), check=True, capture_output=True, timeout=120,
    )
    assert json.loads(output.read_text())["ok"] is True


# ---------------------------------------------------------------- GPU jobs that find no GPU


def _no_cuda_here():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device: the no-GPU error cannot be shown here")


def test_a_command_asked_for_cuda_without_one_stops_before_it_starts(tmp_path):
    """The check is the CLI's, before the command loads anything: pretrain names no missing
    shard folder, it stops at the device."""
    _no_cuda_here()
    import socket

    proc = subprocess.run(
        [sys.executable, "-m", "rnaret", "pretrain", "--device", "cuda", "--shards", str(tmp_path / "absent"),
         "--out", str(tmp_path / "run")],
        env=_env(CUDA_VISIBLE_DEVICES="0,1"), capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 1
    message = proc.stderr.strip().splitlines()[-1]
    assert message.startswith("rnaret pretrain: error: --device cuda was asked for")
    assert f"on node {socket.gethostname()}" in message and "CUDA_VISIBLE_DEVICES='0,1'" in message
    assert "absent" not in proc.stderr and not (tmp_path / "run").exists()


def test_launch_checks_the_device_before_starting_workers(tmp_path):
    _no_cuda_here()
    proc = subprocess.run(
        [sys.executable, "-m", "rnaret", "launch", "--nproc", "2", "--",
         "ddp-check", "--output", str(tmp_path / "ddp.json"), "--device", "cuda"],
        env=_env(), capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 1
    assert "rnaret launch: error: --device cuda was asked for" in proc.stderr
    assert "CUDA_VISIBLE_DEVICES=unset" in proc.stderr
    # torchrun never started: it would have announced OMP_NUM_THREADS for its workers
    assert "OMP_NUM_THREADS" not in proc.stderr and not (tmp_path / "ddp.json").exists()


def test_distributed_setup_refuses_cuda_without_a_gpu(monkeypatch):
    _no_cuda_here()
    from rnaret.device import DeviceError
    from rnaret.train import distributed

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(DeviceError, match=r"CUDA_VISIBLE_DEVICES=''"):
        distributed.setup("cuda")
    ctx = distributed.setup("auto")  # the laptop path: the CPU, said so
    assert ctx.device.type == "cpu" and ctx.world_size == 1


# ---------------------------------------------------------------- several nodes


def _fake_scontrol(nodelist: str, hosts: list[str]):
    """A stand-in for `scontrol` answering `show job` and `show hostnames` as SLURM would."""
    calls = []

    def run(argv):
        calls.append(list(argv))
        if argv[:3] == ["scontrol", "show", "job"]:
            return f"JobId={argv[-1]} JobName=rnaret_x JobState=RUNNING NodeList={nodelist} BatchHost={hosts[0]}\n"
        if argv[:3] == ["scontrol", "show", "hostnames"]:
            assert argv[3] == nodelist
            return "\n".join(hosts) + "\n"
        raise AssertionError(argv)

    return run, calls


def test_slurm_allocation_from_the_job_when_the_step_hid_the_node_list():
    from rnaret.train.launch import Allocation, slurm_allocation

    run, calls = _fake_scontrol("gpu[07-08]", ["gpu07", "gpu08"])
    # what Snakemake's job step leaves: SLURM_JOB_ID only
    allocation = slurm_allocation({"SLURM_JOB_ID": "4711"}, run=run)
    assert allocation == Allocation(job_id="4711", nodes=("gpu07", "gpu08")) and allocation.head == "gpu07"
    assert calls[0] == ["scontrol", "show", "job", "--oneliner", "4711"]
    run, calls = _fake_scontrol("n[1-3]", ["n1", "n2", "n3"])
    assert slurm_allocation({"SLURM_JOB_ID": "5", "SLURM_JOB_NODELIST": "n[1-3]"}, run=run).nodes == ("n1", "n2", "n3")
    assert [c[:3] for c in calls] == [["scontrol", "show", "hostnames"]]
    assert slurm_allocation({}, run=run) is None


def test_multinode_command_starts_one_launcher_per_node_meeting_at_the_first():
    from rnaret.train.launch import Allocation, multinode_command, rendezvous_port

    allocation = Allocation(job_id="4711", nodes=("gpu07", "gpu08"))
    cmd = multinode_command(4, 2, ["pretrain", "--out", "run dir"], allocation, python="/env/bin/python")
    srun, torchrun = cmd[: cmd.index("/env/bin/python")], cmd[cmd.index("/env/bin/python"):]
    assert srun[0] == "srun"
    assert {"--jobid=4711", "--nodes=2", "--ntasks=2", "--ntasks-per-node=1", "--overlap",
            "--kill-on-bad-exit=1"} <= set(srun)
    assert rendezvous_port("4711") == 29400 + 711
    assert torchrun[:3] == ["/env/bin/python", "-m", "torch.distributed.run"]
    assert {"--nnodes=2", "--nproc-per-node=4", "--rdzv-backend=c10d", "--rdzv-endpoint=gpu07:30111",
            "--rdzv-id=4711", "--max-restarts=0"} <= set(torchrun)
    assert torchrun[-5:] == ["-m", "rnaret", "pretrain", "--out", "run dir"]
    with pytest.raises(ValueError, match="has 2 node"):
        multinode_command(4, 3, ["pretrain"], allocation)


def test_resolve_nnodes():
    from rnaret.train.launch import resolve_nnodes

    run, _ = _fake_scontrol("n[1-4]", ["n1", "n2", "n3", "n4"])
    assert resolve_nnodes("auto", {"SLURM_JOB_ID": "9"}, run=run) == 4
    assert resolve_nnodes("auto", {}, run=run) == 1
    assert resolve_nnodes("3") == 3
    for bad in ("0", "-1", "two"):
        with pytest.raises(ValueError):
            resolve_nnodes(bad)


def test_several_nodes_outside_slurm_need_an_endpoint():
    proc = subprocess.run(
        [sys.executable, "-m", "rnaret", "launch", "--nodes", "2", "--nproc", "1", "--", "ddp-check", "--output", "x"],
        env=_env(), capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2 and "--rdzv-endpoint" in proc.stderr


@pytest.fixture(scope="module")
def small_shards(resources, tmp_path_factory):
    """Token shards (k = 1) of the first 600 records of the bundled corpus sample."""
    import gzip

    from rnaret.data.shards import write_shards

    lines, records = [], 0
    with gzip.open(resources / "rnacentral" / "rnacentral_sample.fa.gz", "rt") as fh:
        for line in fh:
            if line.startswith(">"):
                records += 1
                if records > 600:
                    break
            lines.append(line)
    fasta = tmp_path_factory.mktemp("corpus") / "subset.fa"
    fasta.write_text("".join(lines))
    out = tmp_path_factory.mktemp("shards") / "k1"
    write_shards(fasta, out, 1, tokens_per_shard=100_000, valid_fraction=0.1, seed=0, show_progress=False)
    return out


def _tensors(folder):
    from safetensors.torch import load_file

    weights = load_file(str(folder / "weights.safetensors"))
    return {k: v.numpy().tobytes() for k, v in weights.items()}


@pytest.mark.slow
def test_two_launchers_standing_in_for_two_nodes_equal_a_one_node_run(small_shards, tmp_path):
    """Two torchrun launchers of one worker each, meeting through a c10d rendezvous on
    127.0.0.1 as two nodes would, train the same weights, bit for bit, as one launcher with two
    workers. The test process hosts the rendezvous store (port chosen by the OS, held open), so
    no free-port guess can race; both launchers join it as clients."""
    from torch.distributed import TCPStore

    def pretrain(out):
        return ["pretrain", "--shards", str(small_shards), "--out", str(out), "--config-preset", "tiny",
                "--max-steps", "4", "--set", "eval_every=2", "--threads", "1", "--no-progress", "--device", "cpu"]

    launch = [sys.executable, "-m", "rnaret", "launch"]
    one_node = subprocess.Popen(launch + ["--nproc", "2", "--"] + pretrain(tmp_path / "one"),
                                env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    store = TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)
    endpoint = f"127.0.0.1:{store.port}"
    nodes = [subprocess.Popen(launch + ["--nodes", "2", "--nproc", "1", "--rdzv-endpoint", endpoint, "--"]
                              + pretrain(tmp_path / "two"),
                              env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outputs = [p.communicate(timeout=400) for p in [one_node, *nodes]]
    for proc, (_, err) in zip([one_node, *nodes], outputs):
        assert proc.returncode == 0, err[-3000:]
    assert "on each of 2 nodes" in outputs[1][1]
    one, two = _tensors(tmp_path / "one" / "checkpoint"), _tensors(tmp_path / "two" / "checkpoint")
    assert one.keys() == two.keys()
    assert [k for k in one if one[k] != two[k]] == []
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert summary["steps"] == 4
    del store


def test_two_launchers_form_one_world_of_two(tmp_path):
    from torch.distributed import TCPStore

    store = TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)
    output = tmp_path / "ddp.json"
    cmd = [sys.executable, "-m", "rnaret", "launch", "--nodes", "2", "--nproc", "1", "--rdzv-endpoint",
           f"127.0.0.1:{store.port}", "--", "ddp-check", "--output", str(output), "--device", "cpu"]
    nodes = [subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    for proc in nodes:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
    result = json.loads(output.read_text())
    assert (result["world_size"], result["backend"], result["sum"], result["ok"]) == (2, "gloo", 3.0, True)
    # each launcher ran one worker: local rank 0 twice, global ranks 0 and 1
    assert sorted((r["rank"], r["local_rank"]) for r in result["ranks"]) == [(0, 0), (1, 0)]
    del store
