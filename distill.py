"""Distil a BERT teacher (a max-CMI run of train.py) into a DistilBERT student, arXiv 2502.11258 eq. (8).

    python distill.py --task cola --teacher runs/cola-max-lam0.1-seed0/best --alpha 0.5 --temperature 2
    python distill.py --task cola --teacher-sweep runs/cola-max --out runs/cola-distill

The student is DistilBERT initialised from the teacher (every other layer, --student-layers) or a pretrained
DistilBERT (--student). The teacher is fixed and in eval mode, so its logits are computed once and reused.
The run files are train.py's (docs/usage.md, "distill.py"). The options are below.
"""
import argparse
from pathlib import Path

from cmi.loop import Step, fit, linear_scheduler, make_optimizer, predict
from cmi.objectives import DistillationObjective, FeatureMap
from cmi.selection import select_teacher
from common.errors import TrainingError
from data.tasks import Task
from data.tokenization import load_tokenizer
from harness.cli import parse_distill_args, run_main
from harness.runfiles import RunFiles
from harness.training import (RunLog, check_fits, check_text_count, epoch_batches, eval_pass, evaluation, forward_of,
                              grad_scaler, load_classifier, load_data, model_fields, name_labels, prepare, setup,
                              task_of)
from models.bert import BertForSequenceClassification
from models.checkpoint import CheckpointError
from models.distilbert import DistilBertForSequenceClassification
from models.student import distilbert_from_bert


def with_teacher_from_sweep(args, task: Task) -> argparse.Namespace:
    """--teacher-sweep: the arguments with --teacher set to the best/ of the max-CMI run that cmi.selection
    chooses, and why in teacher_selection (recorded in args.json and results.json)."""
    try:
        selection = select_teacher(args.teacher_sweep, task.name, task.primary_metric)
    except TrainingError as e:
        raise TrainingError(f"--teacher-sweep {e}") from None
    for note in selection.notes:
        print(f"note: {note}")
    print(selection.summary())
    chosen = selection.chosen
    why = {"run": str(chosen.run), "metric": task.primary_metric, "value": chosen.metric, "eval_cmi": chosen.eval_cmi,
           "ratio": chosen.ratio, "runs": len(selection.candidates), "notes": selection.notes}
    return argparse.Namespace(**{**vars(args), "teacher": str(chosen.best), "teacher_selection": why})


def load_teacher(path, task: Task, other_labels: bool) -> tuple[BertForSequenceClassification, Path]:
    """The fine-tuned BERT classifier in `path`, and its folder; its logits (the soft targets) in the task's label
    order. A checkpoint that is not one is refused: its classifier would be freshly initialised, and a student
    would learn noise from it."""
    try:
        teacher, folder = load_classifier(BertForSequenceClassification, path, task, other_labels=other_labels,
                                          fine_tuned=True)
    except CheckpointError as e:
        raise CheckpointError(f"--teacher: {e}") from None
    # the fields train.py recorded: a teacher of pairs fed single texts (or the reverse) gives noise as soft targets
    check_text_count(f"--teacher {path}", len(task.text_fields), model_fields(folder, teacher.config)[0])
    return teacher, folder


def main(argv=None) -> None:
    args = parse_distill_args(argv, __doc__)  # the options: harness/cli.py, or python distill.py --help
    task = task_of(args)
    # setup: the teacher is chosen before the run folder is claimed, so that args.json records which
    if args.teacher_sweep:
        args = with_teacher_from_sweep(args, task)
    with RunFiles(args.out, vars(args), args.resume, args.overwrite, args.keep_last) as run:
        runtime = setup(args)

        # teacher and student
        teacher, teacher_dir = load_teacher(args.teacher, task, args.other_labels)
        if args.student:
            student, student_dir = load_classifier(DistilBertForSequenceClassification, args.student, task,
                                                   other_labels=args.other_labels)
            # the batches carry one set of token ids, which both models must read the same way
            if load_tokenizer(student_dir).get_vocab() != load_tokenizer(teacher_dir).get_vocab():
                raise CheckpointError(f"--student {args.student}: its vocabulary differs from the teacher's {teacher_dir}")
        else:
            try:
                student = distilbert_from_bert(teacher, args.student_layers, args.fold_token_type)
            except ValueError as e:
                raise CheckpointError(f"--student-layers {','.join(map(str, args.student_layers))}: {e}") from None
        name_labels(student, task, args.label_field)
        teacher.to(runtime.device).eval().requires_grad_(False)
        teacher_forward = forward_of(teacher, unpad=runtime.unpad)

        # data
        data = load_data(args, task, teacher_dir, min(teacher.config.vocab_size, student.config.vocab_size))
        check_fits(args, {f"--teacher {teacher_dir}": teacher.config, "the student": student.config}, data.splits, runtime)

        # objective, eq. (8)
        features = FeatureMap("pooled")  # the student's h_s for train_cmi / eval_cmi: the vector its classifier reads
        if args.live_teacher:
            objective = DistillationObjective(alpha=args.alpha, temperature=args.temperature,
                                              teacher_forward=teacher_forward)
        else:
            # no dropout in eval mode: the teacher's logits are a function of the example alone, so one pass serves
            # every epoch (indexed by batch["index"]), and the teacher can leave the device
            logits, _ = predict(teacher_forward, teacher, eval_pass(args, data.train, runtime), features=features,
                                num_classes=task.num_labels, num_examples=len(data.train), ctx=runtime.ctx,
                                desc="teacher logits")
            objective = DistillationObjective(alpha=args.alpha, temperature=args.temperature, teacher_logits=logits)
            del teacher, teacher_forward

        # optimiser and schedule: AdamW, the learning rate warmed up linearly, then decayed linearly to 0
        forward = prepare(student, runtime)  # the student on the device, compiled on CUDA, under torchrun in DDP
        epochs = epoch_batches(args, data.train, runtime)
        total_steps = sum(len(batches) for batches in epochs)
        optimizer = make_optimizer(student, args.lr, args.weight_decay)
        scheduler = linear_scheduler(optimizer, total_steps, int(args.warmup_ratio * total_steps))

        # one optimisation step (cmi.loop.train_step), and the loop, evaluated after each epoch
        step = Step(forward=forward, model=student, objective=objective, optimizer=optimizer, scheduler=scheduler,
                    ctx=runtime.ctx, clip=args.clip, accum=args.grad_accum, scaler=grad_scaler(runtime))
        record = {"task": task.name, "mode": "distill", "alpha": args.alpha, "temperature": args.temperature,
                  "seed": args.seed, "train_examples": len(data.train),
                  "eval_examples": len(next(iter(data.evals.values())))}
        log = RunLog(args, run, student, task, data, runtime, total_steps)
        results = fit(step, run, epochs=epochs, evaluation=evaluation(args, task, data, runtime, features),
                      primary=task.primary_metric, record=record, log_every=args.log_every, on_step=log.on_step)
        log.done(results)

if __name__ == "__main__":
    run_main(main)
