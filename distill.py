"""Distil a BERT teacher (a max-CMI run of train.py) into a DistilBERT student, arXiv 2502.11258 eq. (8).

    python distill.py --task cola --teacher runs/cola-max-lam0.1-seed0/best --alpha 0.5 --temperature 2
    python distill.py --task cola --teacher-sweep runs/cola-max --out runs/cola-distill

The student is a DistilBERT made from the teacher (its embeddings and the layers of --student-layers) or a
pretrained DistilBERT (--student). Loss: (1 - alpha) * CE + alpha * T^2 * KL(teacher_T || student_T). The
teacher stays in eval mode, so its logits are computed once over the training set and reused every epoch.
The run files are train.py's. See README.md for the flags.
"""
import argparse
import json
from pathlib import Path

from cmi.loop import RunFiles, autocast_context, predict
from cmi.objectives import DistillationObjective, FeatureMap
from cmi.selection import select_teacher
from data.tasks import get_task
from data.tokenization import load_tokenizer
from models.bert import BertForSequenceClassification
from models.checkpoint import CheckpointError, read_json, resolve
from models.distilbert import DistilBertForSequenceClassification
from models.student import DEFAULT_LAYERS, distilbert_from_bert
from train import (BERT_INPUTS, Parser, add_training_args, check_fits, check_head, check_ranges, forward_of, load_data,
                   name_labels, run_main, setup, train_eval_batches, train_model)

DISTILBERT_INPUTS = ("input_ids", "attention_mask")  # DistilBERT has no token types


def layer_list(text: str) -> list[int]:
    """"0,2,4" -> [0, 2, 4]: distinct indices >= 0 (the upper bound is the teacher's, checked once it is read)."""
    try:
        layers = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated layer indices such as 0,2,4, got {text!r}") from None
    if len(set(layers)) != len(layers) or min(layers) < 0:
        raise argparse.ArgumentTypeError(f"layer indices must be distinct and >= 0, got {text}")
    return layers  # a list, not a tuple: args.json must compare equal on --resume


def parse_args(argv=None) -> argparse.Namespace:
    parser = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = parser.add_argument_group("teacher and student")
    teacher = g.add_mutually_exclusive_group(required=True)
    teacher.add_argument("--teacher", metavar="DIR", help="the teacher: a fine-tuned BERT classifier (the best/ folder of a train.py run)")
    teacher.add_argument("--teacher-sweep", metavar="DIR", help="a folder of train.py runs, one per sub-folder: the teacher is the best/ "
                                                 "of the task's max-CMI run with the highest dev metric / dev CMI "
                                                 "(the paper's rule; in practice the lowest dev CMI, usually the "
                                                 "smallest lambda)")
    student = g.add_mutually_exclusive_group()
    student.add_argument("--student-layers", type=layer_list, default=None, metavar="LIST",
                         help="teacher layers copied into the student, in order (default: 0,2,4,6,8,10)")
    student.add_argument("--student", metavar="DIR", help="a pretrained DistilBERT (folder or hub name) instead of the layer copy; "
                                           "its vocabulary must be the teacher's")
    g.add_argument("--fold-token-type", action=argparse.BooleanOptionalAction, default=None,
                   help="add the teacher's token-type-0 embedding to the student's position embeddings: exact for "
                        "single-sentence inputs, approximate for pairs (default: on; layer copy only)")
    g = parser.add_argument_group("distillation loss, eq. (8)")
    g.add_argument("--alpha", type=float, default=0.5, help="weight of the soft (KL) term; 1 - alpha weighs the CE "
                                                            "(the paper: 0.05-0.9)")
    g.add_argument("--temperature", type=float, default=2.0, help="T of the softened distributions (the paper: 1-5); the KL is "
                                                                   "multiplied by T^2 as in Hinton et al., which "
                                                                   "eq. (8) of the paper does not write")
    g.add_argument("--live-teacher", action="store_true",
                   help="run the teacher on every batch instead of caching its logits once (same result, slower)")
    add_training_args(parser)
    parser.set_defaults(epochs=10)  # the paper trains students for 10 epochs
    args = parser.parse_args(argv)
    check_ranges(args, parser)
    if args.student is not None:
        if args.fold_token_type is not None:
            parser.error("--fold-token-type / --no-fold-token-type apply to the layer copy, not to --student")
    else:
        args.student_layers = args.student_layers or list(DEFAULT_LAYERS)
        args.fold_token_type = args.fold_token_type is not False
    args.out = args.out or f"runs/{args.task}-distill-alpha{args.alpha}-T{args.temperature}-seed{args.seed}"
    return args


def choose_teacher(args, task) -> None:
    """--teacher-sweep: set args.teacher to the chosen run's best/ and record why in args.teacher_selection."""
    selection = select_teacher(args.teacher_sweep, task.name, task.primary_metric)
    for note in selection.notes:
        print(f"note: {note}")
    print(selection.summary())
    chosen = selection.chosen
    args.teacher = str(chosen.best)
    args.teacher_selection = {"run": str(chosen.run), "metric": task.primary_metric, "value": chosen.metric,
                              "eval_cmi": chosen.eval_cmi, "ratio": chosen.ratio, "runs": len(selection.candidates),
                              "notes": selection.notes}


def load_teacher(path, task) -> tuple[BertForSequenceClassification, Path]:
    """The fine-tuned BERT classifier in `path`, and its folder. A checkpoint that is not one is refused: its
    classifier would be freshly initialised, and a student would learn noise from it."""
    try:
        folder = resolve(path)
        check_head(folder, task)
        teacher = BertForSequenceClassification.from_pretrained(folder, num_labels=task.num_labels)
        architectures = read_json(folder / "config.json").get("architectures") or []
        if "BertForSequenceClassification" not in architectures:
            raise CheckpointError(f"{folder}: not a fine-tuned BERT classifier (architectures {architectures}); "
                                  "pass the best/ folder of a train.py run")
    except CheckpointError as e:
        raise CheckpointError(f"--teacher: {e}") from None
    return teacher, folder


def main(argv=None) -> None:
    args = parse_args(argv)
    task = get_task(args.task)
    # setup: the teacher is chosen before the run folder is claimed, so that args.json records which
    if args.teacher_sweep:
        choose_teacher(args, task)
    with RunFiles(args.out, vars(args), resume=args.resume, overwrite=args.overwrite) as run:
        device, amp, compile_ = setup(args)

        # teacher and student
        teacher, teacher_dir = load_teacher(args.teacher, task)
        if args.student:
            student_dir = resolve(args.student)
            check_head(student_dir, task)
            student = DistilBertForSequenceClassification.from_pretrained(student_dir, num_labels=task.num_labels)
            # the batches carry one set of token ids, which both models must read the same way
            if load_tokenizer(student_dir).get_vocab() != load_tokenizer(teacher_dir).get_vocab():
                raise CheckpointError(f"--student {args.student}: its vocabulary differs from the teacher's {teacher_dir}")
        else:
            try:
                student = distilbert_from_bert(teacher, args.student_layers, args.fold_token_type)
            except ValueError as e:
                raise CheckpointError(f"--student-layers {','.join(map(str, args.student_layers))}: {e}") from None
            student.tokenizer_files = teacher.tokenizer_files  # best/ gets the teacher's: the student reads the same ids
        name_labels(student, task)
        teacher.to(device).eval().requires_grad_(False)
        teacher_forward = forward_of(teacher, BERT_INPUTS)

        # data
        train, evals, _ = load_data(args, task, teacher_dir, min(teacher.config.vocab_size, student.config.vocab_size))
        check_fits(args, {f"--teacher {teacher_dir}": teacher.config, "the student": student.config},
                   [train, *evals.values()], device)

        # objective, eq. (8)
        features = FeatureMap("pooled")  # the student's h_s for train_cmi / eval_cmi: the vector its classifier reads
        if args.live_teacher:
            objective = DistillationObjective(args.alpha, args.temperature, teacher_forward=teacher_forward)
        else:
            # no dropout in eval mode: the teacher's logits are a function of the example alone, so one pass serves
            # every epoch (indexed by batch["index"]), and the teacher can leave the device
            logits, _ = predict(teacher_forward, teacher, train_eval_batches(args, train, device), features,
                                task.num_labels, len(train), ctx=autocast_context(device, amp), desc="teacher logits")
            objective = DistillationObjective(args.alpha, args.temperature, teacher_logits=logits)
            del teacher, teacher_forward

        record = {"task": args.task, "mode": "distill", "alpha": args.alpha, "temperature": args.temperature,
                  "seed": args.seed, "train_examples": len(train), "eval_examples": len(next(iter(evals.values())))}
        results = train_model(args, task, student, DISTILBERT_INPUTS, objective, train, evals, features, device, amp,
                              compile_, record, run)
        print(json.dumps({"best_epoch": results["best_epoch"], task.primary_metric: results[task.primary_metric]}))


if __name__ == "__main__":
    run_main(main)
