"""Use a fine-tuned model (the best/ folder of a train.py or distill.py run, BERT or DistilBERT): evaluate it on a
GLUE dev split, write the GLUE test submission files, or label your own file or sentences.

    python predict.py --model runs/cola-min/best --task cola --data-dir glue --split dev
    python predict.py --model runs/cola-min/best --task cola --data-dir glue --split test --out submission
    python predict.py --model runs/mine/best --file new.csv [--text-fields text] [--label-field label]
    python predict.py --model runs/cola-min/best --text "The book was written by John."
    cat sentences.txt | python predict.py --model runs/cola-min/best --text -      (a pair: tab-separated)

Files go into --out (default: predictions): dev, metrics.json and predictions-SPLIT.tsv; test, CoLA.tsv,
SST-2.tsv, MNLI-m.tsv, ... as the GLUE server takes them; --file, predictions.tsv (and metrics.json when the
file has labels). They are the files of one call, written as one set: a folder holding those of an earlier call
is replaced as a whole with --overwrite (never a new predictions.tsv beside another file's metrics.json), and one
holding anything else is refused. --text prints one line per input: the label, its probability, the input.
"""
import argparse
import sys
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from cmi.loop import predict
from cmi.objectives import FEATURES, Features
from common.files import holds_working_folder, write_folder
from data.loading import Examples, empty_text, load_file, load_split, load_test, test_files, text_lines
from data.metrics import compute_metrics
from data.tasks import TASKS, DataError, Task, file_task, get_task, metric_suffix
from data.tokenization import encode, load_tokenizer
from harness.classifiers import check_text_count, load_classifier, model_fields
from harness.cli import (Parser, add_file_args, add_padded_arg, check_field_args, check_ranges, ranged, run_main,
                         runtime_options)
from harness.rundata import check_fits, eval_pass
from harness.runfiles import to_json
from harness.runtime import setup


def parse_args(argv=None) -> argparse.Namespace:
    parser = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True,
                        help="a fine-tuned classifier: the best/ folder of a run, or a hub name")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--task", choices=list(TASKS), help="a GLUE task: its dev (--split dev) or test split")
    source.add_argument("--file", help="your own .csv, .tsv or .jsonl file; with labels, it is evaluated too")
    source.add_argument("--text", action="append", metavar="TEXT",
                        help="a sentence to label (repeatable; a pair: two texts joined by a tab); '-': one per "
                             "line from standard input")
    parser.add_argument("--split", choices=["dev", "test"], default="dev", help="--task: evaluate on dev, or "
                                                                                "write the GLUE test submission files")
    parser.add_argument("--data-dir", help="folder in the GLUE download layout (default: the datasets hub)")
    add_file_args(parser, "--file", label_default=None)
    parser.add_argument("--other-labels", action="store_true",
                        help="--task: accept a model whose label names are not the task's (same count); names "
                             "both have are always matched by name, the others in order")
    parser.add_argument("--out", default="predictions", help="folder for the files (default: predictions)")
    parser.add_argument("--overwrite", action="store_true", help="replace the files of an earlier call in --out")
    parser.add_argument("--cmi-feature", choices=FEATURES, default="pooled", help="h_s of the reported dev CMI")
    ranged(parser, "--max-len", "in [3, 512]", type=int, default=128, help="truncation length in tokens")
    ranged(parser, "--eval-batch-size", "> 0", type=int, default=128, help="examples per batch")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    parser.add_argument("--amp", choices=["auto", "on", "off", "bf16", "fp16"], default="auto",
                        help="autocast: on (= bf16), fp16, off (auto: bf16 on CUDA)")
    add_padded_arg(parser)
    parser.set_defaults(seed=0, compile="off", pad_multiple=None)  # what harness.runtime.setup reads
    args = parser.parse_args(argv)
    check_ranges(args, parser)
    if args.task is None and args.split != "dev":
        parser.error("--split applies to --task")
    if args.task is None and args.data_dir is not None:
        parser.error("--data-dir applies to --task")
    check_field_args(args, parser, own_files=args.task is None)
    return args


def read_texts(texts: list[str], tokenizer: Tokenizer) -> list[list[str]]:
    """--text values, '-' replaced by the non-empty lines of standard input (UTF-8), each split at its tab into
    one text or a pair. An empty text (data.loading.empty_text for the model's `tokenizer`: invisible characters
    only are empty too), more than two tab-separated texts, bytes that are not UTF-8 or a mix of single texts and
    pairs is a DataError naming the input: a label printed for nothing, or for a pair whose second text holds a
    tab, would look like an answer."""
    if texts.count("-") > 1:  # the second read would find it empty: its texts would be silently missing
        raise DataError(f"--text -: given {texts.count('-')} times; standard input is read once, give it once")
    inputs = []  # (where, text)
    for n, text in enumerate(texts, 1):
        if text != "-":
            inputs.append((f"--text #{n}", text))
            continue
        try:  # decoded here, not by sys.stdin: a bad byte is then a line naming it, not an unexpected failure
            lines = text_lines(sys.stdin.buffer.read().decode("utf-8-sig"))
        except UnicodeDecodeError as e:
            raise DataError(f"--text -: standard input is not UTF-8 text (byte {e.start}: {e.reason})") from None
        inputs += [(f"--text -: line {i}", line) for i, line in enumerate(lines, 1)
                   if not empty_text(line, tokenizer)]
    if not inputs:
        raise DataError("--text -: standard input held no text")
    pairs = []
    for where, text in inputs:
        pair = text.split("\t")
        if len(pair) > 2:
            raise DataError(f"{where}: {len(pair)} tab-separated texts; expected one text, or two (a pair)")
        if any(empty_text(t, tokenizer) for t in pair):
            side = " on each side of the tab" if len(pair) == 2 else ""
            raise DataError(f"{where}: an empty text; expected a sentence{side}")
        pairs.append(pair)
    if len({len(p) for p in pairs}) > 1:
        raise DataError("--text: a mix of single sentences and tab-separated pairs; give one kind")
    return pairs


INTERRUPTED = "nothing was written: run the same command again"  # the files are written last, as one set
# every file a call may write into --out, whatever its task and split
RESULT_FILES = {"metrics.json", "predictions.tsv",
                *(f"predictions-{split}.tsv" for task in TASKS.values() for split in task.eval_splits),
                *(f"{name}.tsv" for task in TASKS.values() for name in test_files(task))}


def check_out(out: Path, overwrite: bool) -> None:
    """--out holds the files of one call (RESULT_FILES): refused, before anything is computed, when it holds those of
    an earlier call (without --overwrite), or anything else, which replacing the folder as a whole would remove."""
    if out.exists() and not out.is_dir():
        raise DataError(f"--out {out}: exists and is not a folder")
    if holds_working_folder(out):
        raise DataError(f"--out {out}: is the working folder or one above it; the files go into a folder of their "
                        "own, which a later call replaces as a whole: choose a new or empty --out")
    held = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    others = [name for name in held if name not in RESULT_FILES]
    if others:
        raise DataError(f"--out {out}: holds {others[0]!r}, not a file predict.py writes; its files go into a folder "
                        "of their own: choose a new or empty --out")
    if held and not overwrite:
        raise DataError(f"--out {out}: holds the files of an earlier call ({', '.join(held)}); pass --overwrite to "
                        "replace them, or choose another --out")


def save(out: Path, files: dict[str, bytes]) -> None:
    """Write the call's files as one set: the folder is swapped in whole (common.files.write_folder), so a kill or
    a full disk leaves the earlier set or this one, never a mix."""
    try:
        write_folder(out, files)
    except OSError as e:
        raise DataError(f"--out {out}: writing failed ({e.strerror or e}); nothing in it changed (the files of an "
                        "earlier call, if any, are kept)") from None
    for name in files:
        print(f"wrote {out / name}")


class Predictor:
    """A fine-tuned classifier ready to label examples: its label names, the fields it reads, its tokenizer, where
    it computes."""

    def __init__(self, args, task: Task | None):
        """`task`: the model's outputs in the task's label order, matched by name (a head listing them in another
        order is reordered), so that output i is the task's label i everywhere; None: the head's own labels."""
        self.args, self.runtime = args, setup(**runtime_options(args))
        self.model, self.folder = load_classifier(args.model, task, other_labels=args.other_labels, fine_tuned=True,
                                                  training=False)
        self.model.to(self.runtime.device)
        id2label = self.model.config.id2label or {}
        self.label_names = tuple(str(id2label.get(i, f"LABEL_{i}")) for i in range(self.model.config.num_labels))
        self.text_fields, self.label_field = model_fields(self.folder, self.model.config)
        self.tokenizer = load_tokenizer(self.folder)
        self.features = Features(args.cmi_feature)

    def __call__(self, examples: Examples, desc: str):
        """The probabilities (N, C) of the examples, and the CMI statistics of their features (eqs. 9, 11)."""
        encoded = encode(self.tokenizer, examples, self.args.max_len)
        runtime = self.runtime
        check_fits({str(self.folder): self.model.config}, [encoded], runtime.pad_multiple, self.args.max_len,
                   self.args.task)
        logits, stats = predict(self.model, eval_pass(encoded, self.args.eval_batch_size, runtime), self.features,
                                len(self.label_names), len(encoded), autocast=runtime.precision.autocast(),
                                unpad=runtime.unpad, desc=desc)
        return logits.softmax(-1).cpu().numpy(), stats


def tsv(header: list[str], rows) -> bytes:
    return "".join("\t".join(map(str, row)) + "\n" for row in [header, *rows]).encode()


def metrics_file(name: str, metrics: dict) -> bytes:
    """Print the metrics as percentages; metrics.json holds them as fractions."""
    shown = ", ".join(f"{k} {100 * v:.1f}" for k, v in metrics.items() if not k.startswith("eval_cmi"))
    print(f"{name}: {shown} (%), dev CMI {metrics['eval_cmi']:.3g}")
    return (to_json(metrics, indent=2) + "\n").encode()


def label_texts(predictor: Predictor, texts: list[str]) -> None:
    """--text: one line per input on stdout (label, probability, text); nothing is written."""
    pairs = read_texts(texts, predictor.tokenizer)
    check_text_count("--text", len(pairs[0]), predictor.text_fields)
    examples = Examples(tuple(map(list, zip(*pairs))), np.zeros(len(pairs), dtype=np.int64), False)
    probs, _ = predictor(examples, "predict")
    for pair, p in zip(pairs, probs):
        print(f"{predictor.label_names[p.argmax()]}\t{p.max():.4f}\t" + "\t".join(pair))


def check_not_labels(path: str, examples: Examples, fields: tuple[str, ...], names: tuple[str, ...]) -> None:
    """DataError when a text field found by itself (no --text-fields, a model that does not record its own) holds
    nothing but the model's label names: the labels under another name than --label-field's, which would be read
    as a second text and predicted on."""
    for field, values in zip(fields, examples.texts):
        if set(v.strip() for v in values) <= set(names):
            raise DataError(f"{path}: field {field!r} holds only the model's label names {list(names)}, not texts; "
                            f"if it is the label, pass --label-field {field}; if it is a text, --text-fields")


def label_file(predictor: Predictor, args) -> dict[str, bytes]:
    """--file: predictions.tsv, and metrics.json when the file has the label field. The file's text fields are
    --text-fields, else exactly those the model was trained on (check_model_fields), else found by themselves."""
    names = predictor.label_names
    label_field = args.label_field or predictor.label_field or "label"
    if args.text_fields:
        check_text_count(f"--text-fields {','.join(args.text_fields)}", len(args.text_fields), predictor.text_fields)
    own = not args.text_fields and bool(predictor.text_fields)
    # an unlabelled file is labelled, unless --label-field says which field holds its labels
    examples, _, fields = load_file(args.file, args.text_fields or predictor.text_fields or None, label_field, names,
                                    labelled=args.label_field is not None, model_fields=own,
                                    tokenizer=predictor.tokenizer)
    if not args.text_fields and not own:
        check_not_labels(args.file, examples, fields, names)
    probs, stats = predictor(examples, "predict")
    preds = probs.argmax(-1)
    files = {"predictions.tsv": tsv(["index", "prediction", "probability"],
                                    ((i, names[k], f"{p[k]:.4f}") for i, (k, p) in enumerate(zip(preds, probs))))}
    if examples.labelled:
        task = file_task(Path(args.file).stem, names, fields)
        files["metrics.json"] = metrics_file(task.name, {**compute_metrics(task, preds, examples.labels),
                                                         "eval_cmi": stats.cmi()})
    return files


def evaluate_dev(predictor: Predictor, task, args) -> dict[str, bytes]:
    """--split dev: the task's dev metrics and dev CMI of every dev split, and the predictions of each."""
    metrics, files = {}, {}
    for split in task.eval_splits:
        examples = load_split(task, split, args.data_dir)
        probs, stats = predictor(examples, f"eval {split}")
        preds = probs.argmax(-1)
        metrics |= compute_metrics(task, preds, examples.labels, split)
        metrics["eval_cmi" + metric_suffix(split)] = stats.cmi()
        files[f"predictions-{split}.tsv"] = tsv(["index", "prediction", "label"],
                                                ((i, task.label_names[k], task.label_names[y])
                                                 for i, (k, y) in enumerate(zip(preds, examples.labels))))
    return files | {"metrics.json": metrics_file(task.name, metrics)}


def write_submission(predictor: Predictor, task, args) -> dict[str, bytes]:
    """--split test: the GLUE server's files, label i spelled as in the task's files (0/1, or entailment, ...)."""
    files = {}
    for name, path in test_files(task).items():
        if name == "AX" and args.data_dir is not None and not (Path(args.data_dir) / path).is_file():
            print(f"note: no {Path(args.data_dir) / path}: AX.tsv (the diagnostic set) is not written")
            continue
        index, examples = load_test(task, name, args.data_dir)
        probs, _ = predictor(examples, f"test {name}")
        files[f"{name}.tsv"] = tsv(["index", "prediction"],
                                   zip(index, (task.tsv_label_values[k] for k in probs.argmax(-1))))
    return files


def main(argv=None) -> None:
    args = parse_args(argv)
    out = Path(args.out)
    if not args.text:
        check_out(out, args.overwrite)
    task = None if args.text or args.file else get_task(args.task)
    predictor = Predictor(args, task)
    if task is not None:
        check_text_count(f"--task {task.name}", len(task.text_fields), predictor.text_fields)
    if args.text:
        label_texts(predictor, args.text)
        return
    if args.file:
        files = label_file(predictor, args)
    else:
        files = (evaluate_dev if args.split == "dev" else write_submission)(predictor, task, args)
    save(out, files)


if __name__ == "__main__":
    run_main(main, INTERRUPTED)
