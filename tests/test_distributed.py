"""Data parallelism on CPU with Gloo, 2 processes: gathered evaluation, one DDP step, all-reduced centroids,
and train.py under torchrun (rank 0 alone writes; a kill and --resume; FSDP2 sharding as DDP trains)."""
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file
from torch.nn.parallel import DistributedDataParallel as DDP

from cmi.loop import TrainState, linear_scheduler, predict, train_step
from cmi.objectives import CENTROIDS, CMIObjective, Features, OnlineCentroids
from cmi.precision import Autocast, Float32, TermBackward
from data.batching import eval_batches
from models.bert import BertConfig, BertForSequenceClassification
from conftest import ROOT, args_for, metric_lines

WORLD = 2
N, T = 7, 9  # an odd number of examples: it does not divide by 2
FEATURES = Features()


def tiny_model(dropout=0.0):
    torch.manual_seed(0)
    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=16, hidden_dropout_prob=dropout,
                        attention_probs_dropout_prob=dropout)
    return BertForSequenceClassification(config)


def examples():
    g = torch.Generator().manual_seed(1)
    lengths = torch.randint(3, T + 1, (N,), generator=g)
    ids = torch.randint(5, 50, (N, T), generator=g) * (torch.arange(T) < lengths[:, None])
    return ids, (ids != 0).long(), torch.tensor([0, 1, 1, 0, 1, 0, 0]), lengths.numpy()


def batch_of(index):
    ids, mask, labels, _ = examples()
    index = torch.as_tensor(index)
    return {"input_ids": ids[index], "attention_mask": mask[index], "token_type_ids": torch.zeros_like(ids[index]),
            "labels": labels[index], "index": index}


# name -> (mode, centroid policy, autocast): fixed centroids; in-batch centroids (their class sums all-reduced,
# so G is the global batch's); bf16 autocast (the CMI term backpropagated on its own, averaged by hand)
STEPS = {"min": ("min", "epoch", False), "max_batch": ("max", "batch", False), "min_bf16": ("min", "epoch", True)}


def one_step(name, stats, rank=None):
    """The weights after one SGD step of STEPS[name] on batch 0..5 from tiny_model(); under DDP (rank given)
    each process takes half of the batch."""
    mode, policy, amp = STEPS[name]
    model = tiny_model()
    objective = CMIObjective(mode, 0.5, 2, CENTROIDS[policy](2, 16), FEATURES)
    objective.centroids.refresh(stats)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)  # Adam's first step ~ sign(g) would amplify rounding
    scheduler = linear_scheduler(optimizer, 10, 0)
    batch = batch_of(range(6) if rank is None else range(3 * rank, 3 * rank + 3))
    precision = Autocast(torch.device("cpu")) if amp else Float32()
    train_step(TrainState(model if rank is None else DDP(model), objective, optimizer, scheduler, precision, clip=1.0,
                          raw_model=model), batch)
    return model.state_dict()


def worker(rank, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        lengths = examples()[3]
        # evaluation: each rank its share, gathered by predict
        model = tiny_model()
        batches = [batch_of(b) for b in eval_batches(lengths, 2, rank, WORLD)]
        logits, stats = predict(model, batches, FEATURES, 2, N, autocast=torch.no_grad())
        # online centroids: the first G from a pass, then each rank observes its share of an epoch
        centroids = OnlineCentroids(2, 16)
        centroids.refresh(stats)
        share = batch_of(np.arange(N)[rank::WORLD])
        centroids.observe(FEATURES(model(share["input_ids"])), share["labels"])
        centroids.refresh(stats)  # after the epoch: the all-reduced class means of what the ranks observed
        # one DDP step of each objective of STEPS, each rank on half of a batch of 6
        weights = {name: one_step(name, stats, rank) for name in STEPS}
        # the term-backward decision: each rank measures its own ratios, all take the mean over ranks and steps
        rule = TermBackward(probe_steps=2)
        for ratio in ((0.002, 0.004), (0.038, 0.004))[rank]:
            rule.observe(torch.tensor(ratio))
        if rank == 0:
            torch.save({"logits": logits, "cmi": stats.cmi(), "centroids": stats.centroids(),
                        "online": centroids.G, "weights": weights, "rule": (rule.ratio, rule.separate)}, out)
        dist.barrier()  # both leave the group together: one that exits while the other still uses it may abort
    finally:
        dist.destroy_process_group()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp") / "rank0.pt"
    mp.spawn(worker, args=(free_port(), str(out)), nprocs=WORLD, join=True)
    return torch.load(out, weights_only=True)


def test_gathered_evaluation_equals_a_single_process_pass(two_processes):
    model = tiny_model()
    lengths = examples()[3]
    batches = [batch_of(b) for b in eval_batches(lengths, 2)]
    logits, stats = predict(model, batches, FEATURES, 2, N, autocast=torch.no_grad())
    torch.testing.assert_close(two_processes["logits"], logits)  # every example once, none dropped
    assert (logits.abs().sum(-1) > 0).all()
    torch.testing.assert_close(two_processes["centroids"], stats.centroids())
    assert two_processes["cmi"] == pytest.approx(stats.cmi(), rel=1e-6)  # float32 features, other batches


def test_every_process_takes_the_term_backward_the_mean_ratio_decides(two_processes):
    ratio, separate = two_processes["rule"]
    assert ratio == pytest.approx((0.002 + 0.004 + 0.038 + 0.004) / 4)  # 0.012; rank 0 alone: 0.003
    assert not separate  # one backward of the sum on both ranks, though rank 0's own ratios would keep it apart


def test_online_centroids_are_all_reduced(two_processes):
    model = tiny_model()
    everything = batch_of(np.arange(N))
    f = FEATURES(model(everything["input_ids"]))
    torch.testing.assert_close(two_processes["online"], torch.stack([f[everything["labels"] == k].mean(0) for k in (0, 1)]))


@pytest.mark.parametrize("name", STEPS)
def test_one_ddp_step_equals_a_single_process_step_on_the_concatenated_batch(two_processes, name):
    model = tiny_model()
    lengths = examples()[3]
    stats = predict(model, [batch_of(b) for b in eval_batches(lengths, 2)], FEATURES, 2, N,
                    autocast=torch.no_grad())[1]
    single, ddp = one_step(name, stats), two_processes["weights"][name]
    diff = max((ddp[k] - v).abs().max().item() for k, v in single.items())
    print(f"{name}: one DDP step vs one single-process step, max |weight diff| {diff:.1e}")
    # bf16 rounds a batch of 3 and one of 6 apart (3e-5 measured); the CMI term's part of the step is 1e-3, so a
    # CMI gradient summed instead of averaged over the processes would be off by ~5e-4
    atol = 1e-4 if STEPS[name][2] else 1e-6
    for key, value in single.items():
        torch.testing.assert_close(ddp[key], value, atol=atol, rtol=1e-5, msg=key)
    assert not torch.equal(ddp["classifier.weight"], model.state_dict()["classifier.weight"])


def torchrun(argv, **kwargs):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(WORLD), "--master_port",
           str(free_port()), str(ROOT / "train.py"), *argv]
    return cmd


def kill_every_process_of(marker: str) -> None:
    """SIGKILL every process whose command line holds `marker` (Linux /proc), and wait until they are gone."""
    def alive(pid: int) -> bool:  # a zombie is dead: it only waits for its parent to reap it
        try:
            return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
        except OSError:
            return False

    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if marker in cmdline.read_bytes().decode(errors="replace"):
                pids.append(int(cmdline.parent.name))
                os.kill(pids[-1], signal.SIGKILL)
        except OSError:  # gone meanwhile
            pass
    while any(alive(pid) for pid in pids):
        time.sleep(0.02)


@pytest.mark.parametrize("sharding", [[], ["--fsdp"]], ids=["ddp", "fsdp"])
def test_train_under_torchrun_rank0_writes_and_resumes_after_a_kill(tiny_bert, tmp_path, sharding):
    """Also under --fsdp: last.pt holds the whole model and AdamW state, gathered, and a resume shards them again."""
    argv = args_for(tiny_bert, tmp_path / "full", "--mode", "min", "--max-train-samples", "600", "--epochs", "3",
                    "--max-eval-samples", "101", *sharding)
    done = subprocess.run(torchrun(argv), capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "full").iterdir()) == ["args.json", "best", "metrics.jsonl",
                                                                     "results.json", "run.lock", "steps.jsonl"]
    # last.pt: deleted at the end
    lines = metric_lines(tmp_path / "full")
    assert [line["epoch"] for line in lines] == [1, 2, 3]  # one line per epoch: rank 0 alone writes
    assert lines[0]["train_examples"] == 600 and lines[0]["eval_examples"] == 101

    killed = argv[:]
    killed[killed.index(str(tmp_path / "full"))] = str(tmp_path / "killed")
    proc = subprocess.Popen(torchrun(killed), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    metrics = tmp_path / "killed" / "metrics.jsonl"
    while not (metrics.exists() and metrics.read_text().count("\n") >= 1) and proc.poll() is None:
        time.sleep(0.02)
    time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGKILL)  # torchrun
    kill_every_process_of(str(tmp_path / "killed"))  # its workers: torch >= 2.12 starts each in its own session
    proc.wait()
    assert len(metric_lines(tmp_path / "killed")) < 3, "the run finished before it could be killed"
    resumed = subprocess.run(torchrun(killed + ["--resume"]), capture_output=True, text=True, cwd=ROOT)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert metric_lines(tmp_path / "killed") == lines
    # steps.jsonl too: rank 0 alone writes it, and the interrupted epoch's lines are redone, not doubled
    assert (tmp_path / "killed" / "steps.jsonl").read_text() == (tmp_path / "full" / "steps.jsonl").read_text()


@pytest.mark.parametrize("lora", [[], ["--lora-r", "4"]], ids=["full", "lora"])
def test_train_under_torchrun_with_fsdp_trains_as_ddp_does(tiny_bert, tmp_path, lora):
    """--fsdp (FSDP2: parameters, gradients and AdamW's moments sharded over the 2 processes) trains the run that
    DDP trains, within float32 rounding: the same losses and dev metrics at every epoch, and rank 0 saves the whole
    model, gathered, into best/ as DDP's; with LoRA (frozen and trained parameters in one unit) too, and its
    adapter/."""
    runs = {}
    for name, extra in (("ddp", lora), ("fsdp", ["--fsdp", *lora])):
        argv = args_for(tiny_bert, tmp_path / name, "--mode", "min", "--max-train-samples", "256",
                        "--max-eval-samples", "101", *extra)
        done = subprocess.run(torchrun(argv), capture_output=True, text=True, cwd=ROOT)
        assert done.returncode == 0, done.stderr[-2000:]
        runs[name] = metric_lines(tmp_path / name)
    assert len(runs["fsdp"]) == 2
    for ddp, fsdp in zip(runs["ddp"], runs["fsdp"]):
        assert ddp.keys() == fsdp.keys()
        for key, value in ddp.items():
            assert fsdp[key] == (pytest.approx(value, rel=1e-4, abs=1e-6) if isinstance(value, float) else value), key
    for saved in ["best/model.safetensors"] + (["adapter/adapter_model.safetensors"] if lora else []):
        ddp, fsdp = (load_file(tmp_path / name / saved) for name in ("ddp", "fsdp"))
        assert ddp.keys() == fsdp.keys()
        for key in ddp:
            torch.testing.assert_close(fsdp[key], ddp[key], atol=1e-5, rtol=1e-4, msg=key)


@pytest.mark.parametrize("extra, message", [([], "error: --fsdp shards the model over torchrun's"),
                                            (["--compile", "on"], "error: --compile on: an --fsdp model is not")])
def test_fsdp_without_torchrun_or_with_compile_is_one_line(tiny_bert, tmp_path, extra, message):
    result = subprocess.run([sys.executable, str(ROOT / "train.py"),
                             *args_for(tiny_bert, tmp_path / "run", "--fsdp", *extra)],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 2 and result.stderr.startswith(message), result.stderr
    assert len(result.stderr.splitlines()) == 1 and not (tmp_path / "run").exists()
