"""How much of the CMI term's gradient survives bf16 autocast, with one backward of the sum and with the term's own
backward (cmi.precision.backward), over real CoLA batches (docs/design.md, "Numerics").

    python scripts/bf16_term.py                          # all-MiniLM-L6-v2 from ../shared, pooled h_s
    python scripts/bf16_term.py --feature cls --batches 50

For each batch, the float32 reference is r = g(CE + λ·CMI) − g(CE), the term's own gradient; under bf16 autocast
the same difference d is taken from the gradients that reach the parameters (float32 .grad) with one backward of
the sum, and with the term backpropagated on its own. Printed per λ: the mean over batches of the projection
d·r / r·r (1: all of the term arrives; < 1: part is rounded away, a bias) and of the relative error |d − r| / |r|;
and the projection of the mean d on the mean r (the bias in expectation, what the optimiser sees over many steps).
Eval mode (no dropout), so the runs of a batch see the same network; G: the class means of the initial model.
"""
import argparse
import sys
from contextlib import nullcontext
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from cmi.core import CMIStats  # noqa: E402
from cmi.loop import model_inputs  # noqa: E402
from cmi.objectives import FEATURES, CMIObjective, EpochCentroids, Features  # noqa: E402
from cmi.precision import backward  # noqa: E402
from data.batching import collate, train_batches  # noqa: E402
from data.loading import load_split  # noqa: E402
from data.tasks import get_task  # noqa: E402
from data.tokenization import encode, load_tokenizer  # noqa: E402
from models.bert import BertForSequenceClassification  # noqa: E402


def forward(model, batch):
    """The model's outputs on the batch's real tokens (the unpadded path, train.py's default)."""
    return model(**model_inputs(batch, unpad=True))


def gradient(model, objective, batch, ctx, separate: bool) -> torch.Tensor:
    """The gradient one training step would apply (float32 .grad), flattened."""
    params = [p for p in model.parameters() if p.requires_grad]
    model.zero_grad(set_to_none=True)
    with ctx:
        terms, _ = objective(forward(model, batch), batch)
    backward(terms, params, separate=separate)
    return torch.cat([p.grad.flatten() for p in params if p.grad is not None])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(ROOT.parent / "shared" / "models" / "all-MiniLM-L6-v2"),
                        help="BERT checkpoint folder (its classifier starts fresh)")
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "glue"), help="GLUE folder with CoLA/")
    parser.add_argument("--feature", choices=FEATURES, default="pooled", help="h_s: pooled output or raw [CLS]")
    parser.add_argument("--lams", default="0.05,1,10", help="the λ measured, comma-separated")
    parser.add_argument("--batches", type=int, default=20, help="training batches of 32")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fresh head and the batch order")
    args = parser.parse_args()
    lams = [float(x) for x in args.lams.split(",")]

    torch.manual_seed(args.seed)
    model = BertForSequenceClassification.from_pretrained(args.model, num_labels=2).eval()
    train = encode(load_tokenizer(args.model), load_split(get_task("cola"), "train", args.data_dir), 128)
    features = Features(args.feature)
    batches = [collate(train, index) for index in train_batches(train.lengths, 32, args.seed, 1)[:args.batches]]

    stats = CMIStats(2, model.config.hidden_size)  # G of eq. (14): the class means under the initial model
    with torch.no_grad():
        for batch in batches:
            stats.add(features(forward(model, batch)), batch["labels"])
    centroids = EpochCentroids(2, model.config.hidden_size)
    centroids.refresh(stats)
    bf16 = torch.autocast("cpu", dtype=torch.bfloat16)

    def objective(mode, lam):
        return CMIObjective(mode=mode, lam=lam, num_classes=2, centroids=centroids, features=features)

    print(f"{args.feature} h_s, {len(batches)} CoLA batches of 32, bf16 autocast on CPU")
    print("λ | |λ g(CMI)| / |g(CE)| | one backward: projection, rel. error, projection of the means | "
          "own backward: projection, rel. error, projection of the means")
    for lam in lams:
        rows = {"one": [], "own": []}
        means = {"ref": 0.0, "one": 0.0, "own": 0.0}
        ratio = 0.0
        for batch in batches:
            ce32 = gradient(model, objective("ce", lam), batch, nullcontext(), separate=False)
            ref = gradient(model, objective("min", lam), batch, nullcontext(), separate=False) - ce32
            ce16 = gradient(model, objective("ce", lam), batch, bf16, separate=False)
            ratio += (ref.norm() / ce32.norm()).item() / len(batches)
            means["ref"] = means["ref"] + ref / len(batches)
            for kind, separate in (("one", False), ("own", True)):
                d = gradient(model, objective("min", lam), batch, bf16, separate=separate) - ce16
                rows[kind].append(((d @ ref / (ref @ ref)).item(), ((d - ref).norm() / ref.norm()).item()))
                means[kind] = means[kind] + d / len(batches)
        cells = []
        for kind in ("one", "own"):
            projection = sum(p for p, _ in rows[kind]) / len(batches)
            error = sum(e for _, e in rows[kind]) / len(batches)
            of_means = (means[kind] @ means["ref"] / (means["ref"] @ means["ref"])).item()
            cells.append(f"{projection:.3f}, {error:.2f}, {of_means:.3f}")
        print(f"{lam:g} | {ratio:.1e} | {cells[0]} | {cells[1]}", flush=True)


if __name__ == "__main__":
    main()
