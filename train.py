"""Fine-tune BERT on a GLUE task with the conditional-mutual-information term of arXiv 2502.11258.

    python train.py --task cola --mode min --lam 0.1 --model bert-base-uncased --out runs/cola-min

--mode ce is plain fine-tuning, min adds +lambda * CMI (a better standalone model), max adds -lambda * CMI
(a better teacher for distill.py). The options are below; the files a run writes: docs/usage.md.
"""
from cmi.loop import TrainState, fit, linear_scheduler, make_optimizer
from cmi.objectives import CENTROIDS, CMIObjective, Features
from common.errors import TrainingError
from harness.classifiers import TRAINABLE, check_decoder, is_decoder, load_classifier, name_labels, pretraining_term
from harness.cli import data_source, parse_train_args, run_main, runtime_options
from harness.rundata import check_fits, epoch_batches, eval_passes, load_data, task_of
from harness.runfiles import RunFiles
from harness.runlog import RunLog
from harness.runtime import setup
from models.bert import checkpoint_layers
from models.lora import add_lora


def main(argv=None) -> None:
    args = parse_train_args(argv, __doc__)  # the options: harness/cli.py, or python train.py --help
    # setup: claim the output folder (refused if it holds another run) before any expensive work; a resume refuses a
    # --model folder that holds another checkpoint since
    with RunFiles(args.out, vars(args), args.resume, args.overwrite, args.keep_last,
                  checkpoints={"--model": args.model}) as files:
        runtime = setup(**runtime_options(args), fsdp=args.fsdp)
        source = data_source(args)
        task = task_of(source)

        # model: BERT or a decoder (models/llama.py, models/gpt2.py); the pre-training head only for the gamma * L1
        # term: one the loss does not use would get no gradient
        model, checkpoint_dir = load_classifier(args.model, task, model_types=TRAINABLE, other_labels=args.other_labels,
                                                mlm=args.gamma > 0)
        check_decoder(model, args.cmi_feature)
        name_labels(model, task, args.label_field)

        # data
        data = load_data(source, task, checkpoint_dir, model.config.vocab_size, args.max_len, args.max_train_samples,
                         args.max_eval_samples)
        check_fits({str(checkpoint_dir): model.config}, data.splits, runtime.pad_multiple, args.max_len, args.task)
        if is_decoder(model):  # saved with best/: transformers' classifier finds each last token by it
            model.config.pad_token_id = data.train.pad_id

        # objective: eqs. (13)-(16), the centroids of eq. (14), gamma * L1 of eq. (7)
        features = Features(args.cmi_feature, args.tau)
        mlm = pretraining_term(model, args.gamma, args.model, data.tokenizer.token_to_id) if args.gamma > 0 else None
        centroids = CENTROIDS[args.centroids](task.num_labels, model.config.hidden_size, runtime.device)
        objective = CMIObjective(mode=args.mode, lam=args.lam, num_classes=task.num_labels, centroids=centroids,
                                 features=features, scale=args.cmi_scale, weighting=args.cmi_weighting, mlm=mlm)

        # LoRA (models/lora.py): the base frozen, low-rank adapters and the task head trained
        if args.lora_r:
            try:
                add_lora(model, args.lora_r, args.lora_alpha, args.lora_dropout, args.lora_targets, args.lora_rslora)
            except ValueError as e:
                raise TrainingError(f"--lora-targets: {e}") from None

        # optimiser and schedule: AdamW, the learning rate warmed up linearly, then decayed linearly to 0
        checkpoint_layers(model, args.gradient_checkpointing)  # less memory, the same results
        runs = runtime.wrap(model)  # on the device; compiled on CUDA, under torchrun in DDP
        step_batch = args.batch_size * args.grad_accum  # the examples of one optimisation step
        epochs = epoch_batches(data.train, runtime, args.epochs, step_batch, args.seed, args.group_batches)
        total_steps = sum(len(batches) for batches in epochs)
        optimizer = make_optimizer(model, args.lr, args.weight_decay)
        scheduler = linear_scheduler(optimizer, total_steps, int(args.warmup_ratio * total_steps))

        # what one optimisation step uses (cmi.loop.train_step), and the loop: epochs of eq. (14), evaluated after each
        state = TrainState(model=runs, raw_model=model, objective=objective, optimizer=optimizer, scheduler=scheduler,
                           precision=runtime.precision, clip=args.clip, accum=args.grad_accum, unpad=runtime.unpad)
        passes = eval_passes(task, data, runtime, features, args.eval_batch_size, args.cmi_weighting)
        record = {"task": task.name, "mode": args.mode, "lam": args.lam, "seed": args.seed,
                  "train_examples": len(data.train), "eval_examples": len(next(iter(data.evals.values())))}
        run = RunLog(files, model, task, data, runtime, epochs=epochs, step_batch=step_batch,
                     tensorboard_on=args.tensorboard)
        results = fit(state, run, epochs=epochs, passes=passes, primary=task.primary_metric, record=record,
                      log_every=args.log_every)
        run.done(results)


if __name__ == "__main__":
    run_main(main)
