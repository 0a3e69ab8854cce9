"""Distil a BERT teacher (a max-CMI run of train.py) into a DistilBERT student, arXiv 2502.11258 eq. (8); or a
decoder teacher into a decoder of its architecture with fewer layers.

    python distill.py --task cola --teacher runs/cola-max-lam0.1-seed0/best --alpha 0.5 --temperature 2
    python distill.py --task cola --teacher-sweep runs/cola-max --out runs/cola-distill

The student is DistilBERT initialised from the teacher (every other layer, --student-layers) or a pretrained
DistilBERT (--student); a decoder's is the teacher's architecture with its --student-layers, or a pretrained
decoder (--student). The teacher is fixed and in eval mode, so its logits are computed once and reused.
The run files are train.py's (docs/usage.md, "distill.py"). The options are below.
"""
import argparse
from pathlib import Path

from cmi.loop import TrainState, fit, linear_scheduler, make_optimizer, predict
from cmi.objectives import DistillationObjective, Features
from cmi.selection import select_teacher
from common.errors import TrainingError
from data.tasks import Task
from data.tokenization import load_tokenizer
from harness.classifiers import (DECODERS, TRAINABLE, check_text_count, is_decoder, load_classifier, model_fields,
                                 name_labels)
from harness.cli import data_source, parse_distill_args, run_main, runtime_options
from harness.rundata import check_fits, epoch_batches, eval_pass, eval_passes, load_data, task_of
from harness.runfiles import RunFiles
from harness.runlog import RunLog
from harness.runtime import Runtime, setup
from models.bert import BertForSequenceClassification, checkpoint_layers
from models.checkpoint import CheckpointError
from models.checkpoint import read_json
from models.student import DEFAULT_LAYERS, decoder_student, distilbert_from_bert, every_other_layer, layer_count


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


def default_layers(teacher: Path) -> list[int]:
    """--student-layers left out: every other layer of the teacher, read from its config.json (DEFAULT_LAYERS where
    that cannot be read: loading the teacher then says why)."""
    try:
        count = layer_count(read_json(teacher / "config.json"))
    except CheckpointError:
        count = None
    return every_other_layer(count) if isinstance(count, int) and count > 0 else list(DEFAULT_LAYERS)


def load_teacher(path, task: Task, other_labels: bool) -> tuple[BertForSequenceClassification, Path]:
    """The fine-tuned classifier in `path` (BERT or a decoder), and its folder; its logits (the soft targets) in the task's label
    order. A checkpoint that is not one is refused: its classifier would be freshly initialised, and a student
    would learn noise from it."""
    try:
        teacher, folder = load_classifier(path, task, model_types=TRAINABLE, other_labels=other_labels, fine_tuned=True)
    except CheckpointError as e:
        raise CheckpointError(f"--teacher: {e}") from None
    # the fields train.py recorded: a teacher of pairs fed single texts (or the reverse) gives noise as soft targets
    check_text_count(f"--teacher {path}", len(task.text_fields), model_fields(folder, teacher.config)[0])
    return teacher, folder


def load_student(args, teacher: BertForSequenceClassification, teacher_dir: Path, task: Task):
    """The student: the pretrained model of --student (a DistilBERT for a BERT teacher, a decoder for a decoder),
    whose vocabulary must be the teacher's (the batches carry one set of token ids, which both models must read the
    same way), or the teacher's --student-layers copied into a DistilBERT, or a decoder of the teacher's own kind."""
    decoder = is_decoder(teacher)
    if args.student:
        student, student_dir = load_classifier(args.student, task, model_types=DECODERS if decoder else ("distilbert",),
                                               other_labels=args.other_labels)
        if load_tokenizer(student_dir).get_vocab() != load_tokenizer(teacher_dir).get_vocab():
            raise CheckpointError(f"--student {args.student}: its vocabulary differs from the teacher's {teacher_dir}")
        return student
    try:
        if decoder:
            return decoder_student(teacher, args.student_layers)
        return distilbert_from_bert(teacher, args.student_layers, args.fold_token_type)
    except ValueError as e:
        raise CheckpointError(f"--student-layers {','.join(map(str, args.student_layers))}: {e}") from None


def distillation(args, teacher: BertForSequenceClassification, train, runtime: Runtime,
                 features: Features) -> DistillationObjective:
    """eq. (8) against the teacher's logits: computed once over the training split `train` (no dropout in eval
    mode: they are a function of the example alone, so one pass serves every epoch, indexed by batch["index"]),
    or with --live-teacher on every batch."""
    teacher.to(runtime.device).eval().requires_grad_(False)
    if args.live_teacher:
        return DistillationObjective(alpha=args.alpha, temperature=args.temperature, teacher=teacher,
                                     unpad=runtime.unpad)
    logits, _ = predict(teacher, eval_pass(train, args.eval_batch_size, runtime), features, teacher.config.num_labels,
                        len(train), autocast=runtime.precision.autocast(), unpad=runtime.unpad, desc="teacher logits")
    return DistillationObjective(alpha=args.alpha, temperature=args.temperature, teacher_logits=logits)


def main(argv=None) -> None:
    args = parse_distill_args(argv, __doc__)  # the options: harness/cli.py, or python distill.py --help
    source = data_source(args)
    task = task_of(source)
    # setup: the teacher is chosen before the run folder is claimed, so that args.json records which
    if args.teacher_sweep:
        args = with_teacher_from_sweep(args, task)
    if args.student is None and args.student_layers is None:  # before the run folder, so that args.json records them
        args.student_layers = default_layers(Path(args.teacher))
    # a resume refuses a teacher retrained in place since (its soft targets would be another model's), or a --student
    with RunFiles(args.out, vars(args), args.resume, args.overwrite, args.keep_last,
                  checkpoints={"--teacher": args.teacher, "--student": args.student}) as files:
        runtime = setup(**runtime_options(args), fsdp=args.fsdp)

        # teacher and student
        teacher, teacher_dir = load_teacher(args.teacher, task, args.other_labels)
        student = load_student(args, teacher, teacher_dir, task)
        name_labels(student, task, args.label_field)

        # data
        data = load_data(source, task, teacher_dir, min(teacher.config.vocab_size, student.config.vocab_size),
                         args.max_len, args.max_train_samples, args.max_eval_samples)
        check_fits({f"--teacher {teacher_dir}": teacher.config, "the student": student.config}, data.splits,
                   runtime.pad_multiple, args.max_len, args.task)
        if is_decoder(student):  # saved with best/: transformers' classifier finds each last token by it
            student.config.pad_token_id = data.train.pad_id

        # objective, eq. (8); the student's h_s for train_cmi / eval_cmi: the vector its classifier reads
        features = Features("pooled")
        objective = distillation(args, teacher, data.train, runtime, features)
        del teacher  # with cached logits, the teacher can leave the device

        # optimiser and schedule: AdamW, the learning rate warmed up linearly, then decayed linearly to 0
        checkpoint_layers(student, args.gradient_checkpointing)  # less memory, the same results
        runs = runtime.wrap(student)  # on the device; compiled on CUDA, under torchrun in DDP
        step_batch = args.batch_size * args.grad_accum  # the examples of one optimisation step
        epochs = epoch_batches(data.train, runtime, args.epochs, step_batch, args.seed, args.group_batches)
        total_steps = sum(len(batches) for batches in epochs)
        optimizer = make_optimizer(student, args.lr, args.weight_decay)
        scheduler = linear_scheduler(optimizer, total_steps, int(args.warmup_ratio * total_steps))

        # what one optimisation step uses (cmi.loop.train_step), and the loop, evaluated after each epoch
        state = TrainState(model=runs, raw_model=student, objective=objective, optimizer=optimizer,
                           scheduler=scheduler, precision=runtime.precision, clip=args.clip, accum=args.grad_accum,
                           unpad=runtime.unpad)
        passes = eval_passes(task, data, runtime, features, args.eval_batch_size, args.cmi_weighting)
        record = {"task": task.name, "mode": "distill", "alpha": args.alpha, "temperature": args.temperature,
                  "seed": args.seed, "train_examples": len(data.train),
                  "eval_examples": len(next(iter(data.evals.values())))}
        run = RunLog(files, student, task, data, runtime, epochs=epochs, step_batch=step_batch,
                     tensorboard_on=args.tensorboard)
        results = fit(state, run, epochs=epochs, passes=passes, primary=task.primary_metric, record=record,
                      log_every=args.log_every)
        run.done(results)


if __name__ == "__main__":
    run_main(main)
