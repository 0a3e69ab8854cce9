"""How strong the CMI term is against CE at the start of fine-tuning: |lambda * grad CMI| / |grad CE| over all
parameters, and the cosine of the two gradients, on real CoLA batches (docs/design.md, "How strong the term is").

    python scripts/term_strength.py                       # all-MiniLM-L6-v2 from ../shared, fresh head, tau 1
    python scripts/term_strength.py --feature cls --tau 0.1

G is the class means of f_x over --centroid-examples training examples under the initial model (the `epoch`
policy's first G, estimated on a subset); the gradients are those of the first --batches shuffled batches of 32
(train.py's default order), in float32, in eval mode (no dropout, so CE's and CMI's gradients see the same
network). The term's gradient is linear in lambda: the ratio is printed for several lambdas from one gradient.
First it prints the scale of h_s and the dev CMI of the initial model (eq. 11 against the dev set's own class
means, as a run's eval_cmi), the figures docs/design.md, "h_s: pooled or [CLS]", quotes.
"""
import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from cmi.core import CMIStats, class_centroids, conditional_mutual_information  # noqa: E402
from cmi.loop import model_inputs  # noqa: E402
from cmi.objectives import FEATURES, Features  # noqa: E402
from data.batching import collate, eval_batches, train_batches  # noqa: E402
from data.loading import load_split  # noqa: E402
from data.tasks import get_task  # noqa: E402
from data.tokenization import encode, load_tokenizer  # noqa: E402
from models.bert import BertForSequenceClassification  # noqa: E402

LAMBDAS = (0.05, 0.2, 1.0, 10.0, 100.0)


def forward(model, batch):
    """The model's outputs on the batch's real tokens (the unpadded path, train.py's default)."""
    return model(**model_inputs(batch, unpad=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(ROOT.parent / "shared" / "models" / "all-MiniLM-L6-v2"),
                        help="BERT checkpoint folder (its classifier starts fresh)")
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "glue"), help="GLUE folder with CoLA/")
    parser.add_argument("--feature", choices=FEATURES, default="pooled", help="h_s: pooled output or raw [CLS]")
    parser.add_argument("--tau", type=float, default=1.0, help="temperature of f_x = softmax(h_s / tau)")
    parser.add_argument("--batches", type=int, default=8, help="training batches of 32 the gradients are taken on")
    parser.add_argument("--centroid-examples", type=int, default=2048, help="training examples G is taken from")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fresh head and the batch order")
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    model = BertForSequenceClassification.from_pretrained(args.model, num_labels=2).eval()
    train = encode(load_tokenizer(args.model), load_split(get_task("cola"), "train", args.data_dir), 128)
    features = Features(args.feature, args.tau)
    params = [p for p in model.parameters() if p.requires_grad]

    # the initial model on CoLA dev: the range of h_s, and the CMI as train.py's evaluation computes it
    dev = encode(load_tokenizer(args.model), load_split(get_task("cola"), "validation", args.data_dir), 128)
    stats, low, high = CMIStats(2, model.config.hidden_size), float("inf"), float("-inf")
    with torch.no_grad():
        for b in eval_batches(dev.lengths, 128):
            batch = collate(dev, b)
            out = forward(model, batch)
            h = features.vector(out)
            low, high = min(low, h.min().item()), max(high, h.max().item())
            stats.add(features(out), batch["labels"])

    # G: class means of f_x under the initial model (eq. 9), held fixed as in eq. (14)'s first line
    with torch.no_grad():
        index = torch.randperm(len(train), generator=torch.Generator().manual_seed(args.seed))[:args.centroid_examples]
        batches = [collate(train, index.numpy()[b]) for b in eval_batches(train.lengths[index.numpy()], 128)]
        f = torch.cat([features(forward(model, b)) for b in batches])
        G = class_centroids(f, torch.cat([b["labels"] for b in batches]), 2)

    ratios, cosines, cmis = [], [], []
    for b in train_batches(train.lengths, 32, args.seed, epoch=1, group_batches=1)[:args.batches]:
        batch = collate(train, b)
        out = forward(model, batch)
        cmi = conditional_mutual_information(features(out), batch["labels"], G)
        g_ce = torch.autograd.grad(F.cross_entropy(out.logits, batch["labels"]), params, retain_graph=True,
                                   allow_unused=True)
        g_cmi = torch.autograd.grad(cmi, params, allow_unused=True)
        flat = [torch.cat([(g if g is not None else torch.zeros_like(p)).flatten() for g, p in zip(gs, params)])
                for gs in (g_ce, g_cmi)]
        ratios.append((flat[1].norm() / flat[0].norm()).item())
        cosines.append(F.cosine_similarity(flat[0], flat[1], dim=0).item())
        cmis.append(cmi.item())

    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    print(f"{args.model}, CoLA, {args.feature} h_s, tau {args.tau:g}, fresh head, {args.batches} batches of 32; "
          f"G from {args.centroid_examples} training examples")
    print(f"CoLA dev before fine-tuning: h_s in [{low:.3g}, {high:.3g}], dev CMI {stats.cmi():.3g}")
    print(f"batch CMI against G: {mean(cmis):.3g}; cosine(grad CE, grad CMI): {mean(cosines):+.3f} "
          f"(batches: {min(cosines):+.3f} to {max(cosines):+.3f})")
    for lam in LAMBDAS:
        print(f"  lambda {lam:<6g} |lambda grad CMI| / |grad CE| = {lam * mean(ratios):.2g}")


if __name__ == "__main__":
    main()
