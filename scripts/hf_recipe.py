"""The reference recipe of the CoLA figure: plain fine-tuning in a minimal loop, with transformers' model or ours
started from the same weights (transformers' load, its fresh classifier included) and fed the same batches.

    python scripts/hf_recipe.py --model transformers
    python scripts/hf_recipe.py --model ours

AdamW (lr 5e-5, no weight decay), linear decay to 0 without warm-up, gradient clipping at 1, batch 32 in a
random order (no length grouping), dynamic padding; dev MCC after each epoch. Not a test (hours of CPU); the
short version is tests/test_parity.py::test_fine_tuning_real_minilm_follows_transformers_step_for_step.
"""
import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import transformers

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from data.batching import collate, eval_batches  # noqa: E402
from data.loading import load_split  # noqa: E402
from data.metrics import compute_metrics  # noqa: E402
from data.tasks import get_task  # noqa: E402
from data.tokenization import encode, load_tokenizer  # noqa: E402
from models.bert import BertForSequenceClassification  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["transformers", "ours"], required=True)
    parser.add_argument("--checkpoint", default=str(ROOT.parent / "shared" / "models" / "all-MiniLM-L6-v2"))
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "glue"))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    task = get_task("cola")
    tokenizer = load_tokenizer(args.checkpoint)
    train = encode(tokenizer, load_split(task, "train", args.data_dir), 128)
    dev = encode(tokenizer, load_split(task, "validation", args.data_dir), 128)
    torch.manual_seed(args.seed)
    model = transformers.BertForSequenceClassification.from_pretrained(args.checkpoint, num_labels=2)
    if args.model == "ours":
        start = tempfile.mkdtemp()
        model.save_pretrained(start)
        model = BertForSequenceClassification.from_pretrained(start, num_labels=2)
    torch.manual_seed(args.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    steps = args.epochs * -(-len(train) // args.batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: max(0.0, 1 - step / steps))
    order = torch.Generator().manual_seed(args.seed)

    def forward(batch):
        return model(batch["input_ids"], attention_mask=batch["attention_mask"],
                     token_type_ids=batch["token_type_ids"]).logits

    for epoch in range(1, args.epochs + 1):
        model.train()
        t0, losses = time.perf_counter(), []
        perm = torch.randperm(len(train), generator=order).numpy()
        for i in range(0, len(perm), args.batch_size):
            batch = collate(train, perm[i:i + args.batch_size])
            loss = F.cross_entropy(forward(batch), batch["labels"])
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
        model.eval()
        preds = np.zeros(len(dev), dtype=np.int64)
        with torch.no_grad():
            for index in eval_batches(dev.lengths, 128):
                preds[index] = forward(collate(dev, index)).argmax(-1).numpy()
        metrics = compute_metrics(task, preds, dev.labels, "validation")
        print(json.dumps({"model": args.model, "epoch": epoch, "train_loss": float(np.mean(losses)), **metrics,
                          "seconds": time.perf_counter() - t0}), flush=True)


if __name__ == "__main__":
    main()
