"""bench.py and scripts/bench_diagnostics.py end to end in their smallest configuration: the JSON they write has
every field, with positive numbers. No timing thresholds: the figures are measured, not asserted."""
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import bench
from benchmark import contenders, measuring
from harness import rundata
from harness.cli import TRAIN_DEFAULTS
from models.bert import BertConfig, BertForSequenceClassification

ROOT = Path(__file__).resolve().parents[1]


def positive(*values):
    return all(isinstance(v, (int, float)) and v > 0 for v in values)


def test_smallest_run_writes_every_section(tmp_path):
    out = tmp_path / "bench.json"
    argv = ["--presets", "tiny", "--sections", "step,mfu,cmi,epoch,distill", "--batch-size", "4",
            "--seq-len", "16", "--repeats", "2", "--warmup", "1", "--epoch-batches", "2", "--chunk", "1",
            "--device", "cpu", "--compile", "off", "--out", str(out)]
    result = subprocess.run([sys.executable, str(ROOT / "bench.py"), *argv], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "| preset | B x T | compile |" in result.stdout  # the table is printed
    r = json.loads(out.read_text())

    assert r["meta"]["precision"] == "float32" and r["meta"]["compile_modes"] == ["eager"]
    assert r["meta"]["command"].startswith("python bench.py --presets tiny")

    (step,) = r["step"]
    assert (step["preset"], step["compile"], step["batch_size"], step["seq_len"]) == ("tiny", "eager", 4, 16)
    assert 0 < step["real_tokens"] < step["padded_slots"] == 64  # the synthetic batch has padding
    assert positive(step["speedup"], step["matmul_flops_per_s"], step["flops_real"], step["flops_padded"])
    assert step["speedup_quartiles"][0] <= step["speedup"] <= step["speedup_quartiles"][1]
    assert step["speedup_padded_quartiles"][0] <= step["speedup_padded"] <= step["speedup_padded_quartiles"][1]
    for name in ("ours", "padded", "transformers"):
        s = step[name]
        assert positive(s["seconds"], s["samples_per_s"], s["tokens_per_s"], s["slots_per_s"], s["mfu_real"],
                        s["mfu_padded"], s["peak_mib"])  # peak memory from the profiler's timeline on CPU
        assert s["repeats"] == 2 and s["sdpa"].startswith(("attention_math", "flash_attention"))

    (cmi,) = r["cmi"]
    assert positive(cmi["ce_seconds"], cmi["min_seconds"]) and cmi["overhead"] > -1
    assert cmi["overhead_quartiles"][0] <= cmi["overhead"] <= cmi["overhead_quartiles"][1]
    assert set(cmi["all_seconds"]) == {"ce", "min", "ce_alone", "min_alone"} and cmi["term_overhead"] < 1

    # every epoch task, its whole training split or a fixed subset of 8,551 (CoLA's size)
    assert [(e["task"], e["train_examples"]) for e in r["epoch"]] == [("cola", 8551), ("mrpc", 3668), ("sst2", 8551)]
    for epoch in r["epoch"]:
        for name in ("ours", "padded", "transformers"):
            e = epoch[name]
            assert e["batches"] == 2 and e["examples"] == 8
            assert positive(e["seconds"], e["samples_per_s"], e["epoch_seconds"], e["peak_mib"])
        assert 0 < epoch["padding"] < 1 and positive(epoch["speedup_transformers"], epoch["speedup_padded"])

    (distill,) = r["distill"]
    assert distill["teacher"] == "tiny" and distill["student_layers"] == 1
    assert positive(distill["speedup"], distill["speedup_10_epochs"], distill["teacher_pass_seconds"],
                    distill["cached"]["epoch_seconds"], distill["live"]["epoch_seconds"],
                    distill["cached"]["peak_mib"], distill["live"]["peak_mib"])
    assert distill["padding"] == r["epoch"][0]["padding"]  # CoLA's batches, as the epoch section (train.py) draws them


def test_the_batches_timed_are_train_pys():
    """The batches a section times are the first of train.py's first epoch: what is timed is what a run trains on."""
    encoded = SimpleNamespace(lengths=torch.randint(1, 60, (1000,)).numpy())
    args = TRAIN_DEFAULTS
    first = rundata.epoch_batches(encoded, SimpleNamespace(device="cpu", pad_multiple=None), 1, args.batch_size,
                                  args.seed, args.group_batches)[0]
    timed = contenders.epoch_order(encoded, args.batch_size, args.seed, 5)
    assert [b.tolist() for b in timed] == [b.tolist() for b in first.index_batches[:5]]


def test_epochs_in_both_precisions_and_with_the_cmi_term(tmp_path):
    """--amp both times every contender in float32 and bf16 autocast on the same batches (padded aside), against
    ours in bf16; --epoch-lam adds ours trained with min-CMI, whose Step persists over the turns as over an epoch."""
    out = tmp_path / "bench.json"
    argv = ["--presets", "tiny", "--sections", "epoch", "--epoch-tasks", "cola", "--epoch-batches", "12", "--chunk",
            "4", "--amp", "both", "--epoch-lam", "1", "--device", "cpu", "--compile", "off", "--out", str(out)]
    result = subprocess.run([sys.executable, str(ROOT / "bench.py"), *argv], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    r = json.loads(out.read_text())
    assert r["meta"]["precision"] == "float32 and bf16 autocast"
    (epoch,) = r["epoch"]
    names = ["ours", "transformers", "ours_min", "ours_bf16", "transformers_bf16", "ours_min_bf16"]
    assert epoch["contenders"] == names and epoch["reference"] == "ours_bf16" and epoch["lam"] == 1
    for name in names:
        assert epoch[name]["batches"] == 12 and positive(epoch[name]["epoch_seconds"], epoch[name]["peak_mib"])
        if name != "ours_bf16":
            assert positive(epoch[f"speedup_{name}"])
    assert "speedup over transformers_bf16" in result.stdout


def test_the_decoder_section_races_ours_against_transformers_on_one_decoder(tmp_path):
    """Once, however many presets: a decoder of Qwen2.5-0.5B's width (one layer here) from the same random weights,
    ours unpadded against transformers' Qwen2ForSequenceClassification, on real CoLA batches."""
    out = tmp_path / "bench.json"
    argv = ["--presets", "tiny,minilm", "--sections", "decoder", "--epoch-tasks", "cola", "--epoch-batches", "4",
            "--chunk", "2", "--decoder-layers", "1", "--device", "cpu", "--compile", "off", "--out", str(out)]
    result = subprocess.run([sys.executable, str(ROOT / "bench.py"), *argv], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    (row,) = json.loads(out.read_text())["decoder"]
    assert row["preset"] == "qwen2.5-0.5b width, 1 layers" and row["contenders"] == ["ours", "transformers"]
    assert row["ours"]["batches"] == row["transformers"]["batches"] == 4 and 0 < row["padding"] < 1
    assert positive(row["speedup_transformers"], row["ours"]["peak_mib"], row["transformers"]["peak_mib"])
    assert "| qwen2.5-0.5b width, 1 layers | cola |" in result.stdout
    step = row["step"]  # and one step of each on the first real batch
    assert positive(step["ours_ms"], step["transformers_ms"], step["speedup_transformers"]) and step["tokens"] < step["slots"]
    assert "One training step on the first batch" in result.stdout


def test_the_memory_section_measures_full_and_lora_training_of_one_decoder(tmp_path):
    """Once, however many presets: LoRA trains a few parameters, keeps bf16 weights (half the bytes) and AdamW moments
    for what trains only; activation checkpointing lowers the step's peak (two layers: with one, it keeps as much)."""
    out = tmp_path / "bench.json"
    argv = ["--presets", "tiny,minilm", "--sections", "memory", "--epoch-tasks", "mrpc", "--epoch-batches", "2",
            "--batch-size", "8", "--decoder-layers", "2", "--device", "cpu", "--compile", "off", "--out", str(out)]
    result = subprocess.run([sys.executable, str(ROOT / "bench.py"), *argv], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    full, autocast, lora, checkpointed = json.loads(out.read_text())["memory"]
    assert [r["setting"] for r in (full, autocast, lora, checkpointed)] == [
        "full, float32", "full, bf16 autocast", "LoRA, bf16 weights", "LoRA, bf16 weights, checkpointing"]
    assert full["trained"] == full["parameters"] and 0 < lora["trained"] < full["parameters"] / 100
    assert full["moments_mib"] == pytest.approx(2 * full["weights_mib"])  # m and v, float32, of every parameter
    assert lora["moments_mib"] == pytest.approx(8 * lora["trained"] / 2**20)  # of the adapters and head alone
    assert lora["weights_mib"] < 0.6 * full["weights_mib"]
    assert 0 < checkpointed["step_peak_mib"] < lora["step_peak_mib"] < full["step_peak_mib"]
    assert "| LoRA, bf16 weights, checkpointing |" in result.stdout


def test_smallest_diagnostics_run_writes_every_section(tmp_path):
    out = tmp_path / "diagnostics.json"
    argv = ["--presets", "tiny", "--batch-size", "4", "--seq-len", "16", "--repeats", "2", "--warmup", "1",
            "--device", "cpu", "--compile", "off", "--out", str(out)]
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_diagnostics.py"), *argv],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "| preset | B x T | real tokens |" in result.stdout  # the tables are printed
    r = json.loads(out.read_text())
    assert r["meta"]["command"].startswith("python scripts/bench_diagnostics.py --presets tiny")

    (attention,) = r["attention"]
    assert attention["batch_size"] == 4 and 0 < attention["real_tokens"] < 4 * attention["seq_len"]
    assert attention["repad"]["max_abs_diff"] == 0  # the padded model's attention, bit for bit
    for name in ("repad", "nested", "loop"):
        assert positive(attention[name]["seconds"]) and attention[name]["max_abs_diff"] < 1e-5

    (prof,) = r["profile"]
    assert positive(prof["step_ms"]) and abs(sum(prof["shares"].values()) - 1) < 1e-9
    assert prof["shares"]["linear layers"] > 0 and prof["shares"]["optimiser and clipping"] > 0

    (overhead,) = r["overhead"]
    assert positive(overhead["ours"]["seconds"], overhead["ours"]["share_of_step"], overhead["transformers"]["seconds"])


@pytest.mark.parametrize("argv", [["--sections", "step,nope"], ["--presets", "huge"], ["--sections", "mfu"],
                                  ["--repeats", "0"], ["--epoch-tasks", "cola,imdb"], ["--epoch-examples", "0"],
                                  ["--sections", "step,profile"]])
def test_bad_flags_are_one_line_errors(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        bench.parse_args(argv)
    assert exit_.value.code == 2 and capsys.readouterr().err.count("\n") == 1


def test_step_flops_formula():
    """6 N tokens + 12 L T d tokens, N without the embedding tables; real tokens give each sequence its own T."""
    config = BertConfig(vocab_size=99, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=20)
    model = BertForSequenceClassification(config)
    N = sum(p.numel() for name, p in model.named_parameters() if not name.startswith("bert.embeddings."))
    N += sum(p.numel() for p in model.bert.embeddings.norm.parameters())  # LayerNorm is not a table
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    real, padded = bench.step_flops(model, mask)
    assert real == 6 * N * 6 + 12 * 2 * 16 * (4 * 4 + 2 * 2)
    assert padded == 6 * N * 8 + 12 * 2 * 16 * 2 * 4 * 4


SMALL = ["--presets", "tiny", "--sections", "step", "--batch-size", "2", "--seq-len", "8", "--repeats", "1",
         "--warmup", "0", "--device", "cpu", "--compile", "off"]
GLUE = ROOT.parent / "shared" / "glue"  # CoLA, MRPC and SST-2: no RTE


@pytest.mark.parametrize("argv, message", [
    (["--out", "{tmp}/missing/bench.json"], "--out {tmp}/missing/bench.json: cannot write into {tmp}/missing (no such "
                                            "folder, or not writable) (see bench.py --help)"),
    (["--out", "{tmp}"], "--out {tmp}: is a folder; expected the JSON file to write (see bench.py --help)"),
    (["--device", "cuda"], "--device cuda: CUDA is not available on this machine (see bench.py --help)"),
    (["--checkpoint", "{tmp}/nope", "--sections", "step,distill"], "{tmp}/nope: checkpoint folder does not exist"),
    (["--sections", "step,overhead,attention"], "--sections: overhead, attention: measured by "
                                                "scripts/bench_diagnostics.py now (see bench.py --help)"),
    (["--sections", "epoch", "--epoch-tasks", "cola,rte"], f"{GLUE}/RTE/train.tsv: file not found (task rte, GLUE "
                                                           "download layout)"),
    (["--presets", "minilm", "--seq-len", "1000"], "--seq-len 1000 > the minilm preset's 512 positions"),
])
def test_bad_inputs_are_one_line_before_anything_is_measured(tmp_path, argv, message):
    if "cuda" in argv and torch.cuda.is_available():
        pytest.skip("a GPU is there")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in SMALL + ["--out", str(tmp_path / "b.json")] + argv]
    result = subprocess.run([sys.executable, str(ROOT / "bench.py"), *argv], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 2 and result.stderr == f"error: {message.replace('{tmp}', str(tmp_path))}\n", \
        result.stderr[-2000:]
    assert result.stdout == "" and list(tmp_path.iterdir()) == []  # nothing measured, nothing written


@pytest.mark.parametrize("argv, message", [
    (["--sections", "step"], "--sections: unknown step; expected some of overhead, attention, profile (see "
                             "bench_diagnostics.py --help)"),
    (["--out", "{tmp}"], "--out {tmp}: is a folder; expected the JSON file to write (see bench_diagnostics.py --help)"),
    (["--checkpoint", "{tmp}/nope", "--sections", "overhead,profile"], "{tmp}/nope: checkpoint folder does not exist"),
])
def test_diagnostics_bad_inputs_are_one_line_before_anything_is_measured(tmp_path, argv, message):
    argv = [a.replace("{tmp}", str(tmp_path))  # the last --sections given counts
            for a in SMALL + ["--sections", "overhead", "--out", str(tmp_path / "d.json")] + argv]
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_diagnostics.py"), *argv],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 2 and result.stderr == f"error: {message.replace('{tmp}', str(tmp_path))}\n", \
        result.stderr[-2000:]
    assert result.stdout == "" and list(tmp_path.iterdir()) == []  # nothing measured, nothing written


def test_a_failed_write_after_measuring_prints_the_measurements(tmp_path, monkeypatch, capsys):
    from harness.cli import run_main

    def full_disk(path, write):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(measuring, "write_file", full_disk)
    out = tmp_path / "bench.json"
    with pytest.raises(SystemExit) as exit_info:
        run_main(lambda: bench.main(SMALL + ["--out", str(out)]), bench.INTERRUPTED)
    printed, err = capsys.readouterr()
    assert exit_info.value.code == 2 and err == f"error: --out {out}: writing failed (No space left on device); the " \
                                                "results are printed above as JSON\n"
    start = printed.index("\n{\n") + 1
    results = json.loads(printed[start:printed.index("\n}\n", start) + 2])
    (step,) = results["step"]
    assert step["preset"] == "tiny" and positive(step["ours"]["seconds"]) and not out.exists()
