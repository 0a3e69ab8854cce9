"""What the test files share: the paths of the real data and checkpoint in ../shared beside the repository, a
tiny BERT checkpoint with the real vocabulary, the helpers that run train.py on a few real CoLA examples, and
real CoLA examples written as the user's own files."""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

# Tests compare whole runs bit for bit (repeated, resumed, killed against uninterrupted). With 2 intra-op threads
# the CPU kernels are not reproducible from process to process: measured on 2026-12-03, the features of the tiny
# BERT on one 128 x 28 batch differed in their last bits in 2 to 5 of 40 pytest processes, in 0 of 40 with one
# thread. So the tests, and the scripts they start (which inherit the variable), run single-threaded. Set before
# torch is imported: its thread pool reads it once.
os.environ["OMP_NUM_THREADS"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402

from models.bert import BertConfig, BertForSequenceClassification

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
GLUE = SHARED / "glue"
MINILM = SHARED / "models" / "all-MiniLM-L6-v2"
TIMING = ("epoch_seconds", "samples_per_s")  # the fields of a metrics line that differ between equal runs


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory):
    """A tiny random BERT with the real uncased vocabulary (and its tokenizer files), saved as a checkpoint."""
    torch.manual_seed(0)
    config = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                        max_position_embeddings=128, num_labels=2)
    path = tmp_path_factory.mktemp("tiny-bert")
    BertForSequenceClassification(config).save_pretrained(path, tokenizer_dir=MINILM)
    return path


def args_for(model, out, *extra) -> list[str]:
    """train.py's arguments for a short run on 192 real CoLA examples."""
    return ["--task", "cola", "--model", str(model), "--data-dir", str(GLUE), "--out", str(out),
            "--max-train-samples", "192", "--max-eval-samples", "96", "--batch-size", "16", "--lr", "1e-3",
            "--epochs", "2", *extra]


def run_cli(argv, **kwargs):
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *argv], capture_output=True, text=True,
                          cwd=ROOT, **kwargs)


def metric_lines(out) -> list[dict]:
    """The lines of a run's metrics.jsonl, timings left out."""
    lines = [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in line.items() if k not in TIMING} for line in lines]


def cola_rows(n, start=0):
    """(sentence, label) of real CoLA training examples."""
    lines = (GLUE / "CoLA" / "train.tsv").read_text().splitlines()[start:start + n]
    return [(line.split("\t")[3], line.split("\t")[1]) for line in lines]


def write_own(path, rows, names=("bad", "good")):
    """rows (sentence, "0"/"1") as the user's own file: .csv (quoted), .tsv or .jsonl, labels named `names`."""
    records = [{"id": i, "text": s, "label": names[int(y)]} for i, (s, y) in enumerate(rows)]
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
    elif path.suffix == ".tsv":  # as the GLUE files: no quoting, a '"' is part of the text
        lines = [("id", "text", "label")] + [(r["id"], r["text"], r["label"]) for r in records]
        path.write_text("".join("\t".join(map(str, line)) + "\n" for line in lines))
    else:
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["id", "text", "label"])
            writer.writerows([r["id"], r["text"], r["label"]] for r in records)
    return path
