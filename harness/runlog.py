"""What a run says as it goes, around its files (harness/runfiles.py): the start line, TensorBoard (--tensorboard),
a heartbeat on a stderr that is not a terminal, the done line, and the settings results.json records beside the
arguments. `RunLog` is what the recipes hand cmi.loop.fit as the run."""
import json
import shutil
import sys
import time

import torch

from cmi.distributed import rank, world_size
from common.optional import optional
from data.tasks import Task
from harness.rundata import Data
from harness.runfiles import RunFiles
from harness.runtime import Runtime

HEARTBEAT_SECONDS = 30


class Board:
    """--tensorboard: the values of steps.jsonl and metrics.jsonl as TensorBoard events in OUT/tensorboard.

    Event files can only be appended to, and a resumed run redoes the epoch a kill interrupted: events appended
    after a resume would hold that epoch's steps twice (1..7, 5..8), and readers show both. So the events are
    rebuilt from steps.jsonl, which RunFiles.start has cut back to the checkpoint, when the run logs its first
    step (or at its end): after any resume they are those of an uninterrupted run, each step once. A kill
    while rebuilding loses nothing that steps.jsonl does not hold."""

    STEP_KEYS = ("loss", "ce", "kd", "batch_cmi", "lr", "grad_norm")

    def __init__(self, writer_class, run: RunFiles):
        self.writer_class, self.run, self.writer = writer_class, run, None

    def _open(self) -> None:
        folder = self.run.out / "tensorboard"
        shutil.rmtree(folder, ignore_errors=True)  # the events of an earlier process in the folder
        self.writer = self.writer_class(str(folder))
        for line in map(json.loads, self.run.step_lines()):
            self._add_step(line)

    def _add_step(self, line: dict) -> None:
        for k in self.STEP_KEYS:
            if k in line:
                self.writer.add_scalar(f"step/{k}", line[k], line["step"])

    def step(self, line: dict) -> None:
        """A line just appended to steps.jsonl (the first one is written by the rebuild)."""
        if self.writer is None:
            self._open()
        else:
            self._add_step(line)

    def close(self) -> None:
        """The end of the run: every epoch's values of metrics.jsonl, then the files are closed."""
        if self.writer is None:
            self._open()
        for line in map(json.loads, self.run.metrics.read_text().splitlines()):
            for k, v in line.items():
                if isinstance(v, float):
                    self.writer.add_scalar(f"epoch/{k}", v, line["epoch"])
        self.writer.close()


def tensorboard(run: RunFiles) -> Board | None:
    """A Board into OUT/tensorboard (rank 0), or a one-line error without the package (--tensorboard)."""
    if rank() != 0:
        return None
    board = optional("torch.utils.tensorboard", "--tensorboard needs the tensorboard package: pip install tensorboard "
                                                "(or pip install -e '.[tensorboard]')")
    return Board(board.SummaryWriter, run)


def settings(runtime: Runtime, data: Data) -> dict:
    """How a run computes and on what, beyond its arguments (which say "auto"): recorded in results.json so that
    runs compared as a pair can be checked to differ in their arm only (report.py)."""
    return {"path": "unpadded" if runtime.unpad else "padded", "threads": torch.get_num_threads(),
            "amp": str(runtime.precision.dtype).removeprefix("torch.") if runtime.precision.dtype else "off",
            "compile": runtime.compile, "world_size": world_size(),
            "data": {name: enc.fingerprint() for name, enc in {"train": data.train, **data.evals}.items()}}


class Heartbeat:
    """When stderr is not a terminal (nohup, a batch scheduler: no progress bar), a line at most every
    HEARTBEAT_SECONDS: the epoch's progress, the loss, the speed and the time left."""

    def __init__(self, epochs: int, step_batch: int):
        self.epochs, self.step_batch = epochs, step_batch
        self.on = not sys.stderr.isatty()
        self.last = time.monotonic()  # the first heartbeat after HEARTBEAT_SECONDS

    def beat(self, line: dict, i: int, steps: int, seconds: float) -> None:
        """The step `i` of `steps` of its epoch just logged (`line`), `seconds` into the epoch."""
        if not self.on or time.monotonic() - self.last < HEARTBEAT_SECONDS:
            return
        self.last = time.monotonic()
        per_step = seconds / i
        left = per_step * (steps - i)
        print(f"epoch {line['epoch']}/{self.epochs}, step {i}/{steps}: loss {line['loss']:.4f}, "
              f"lr {line['lr']:.3g}, {self.step_batch / per_step:.0f} samples/s, epoch done in {left:.0f} s "
              f"(~{left + per_step * steps * (self.epochs - line['epoch']):.0f} s of training left)",
              file=sys.stderr, flush=True)


class RunLog:
    """A run's files (`files`, which cmi.loop.fit writes through this) and what the run says as it goes: the start
    line, each logged step into TensorBoard and the heartbeat, the done line with results.json."""

    def __init__(self, files: RunFiles, model: torch.nn.Module, task: Task, data: Data, runtime: Runtime, *,
                 epochs: list, step_batch: int, tensorboard_on: bool = False):
        """`epochs`: each epoch's batches; `step_batch`: the examples of one optimisation step."""
        self.files, self.task, self.epochs, self.runtime = files, task, len(epochs), runtime
        self.settings = settings(runtime, data)  # into results.json
        self.board = tensorboard(files) if tensorboard_on else None
        self.heartbeat = Heartbeat(len(epochs), step_batch)
        if rank() == 0:  # what a log under nohup or a scheduler should say first
            params = sum(p.numel() for p in model.parameters())
            steps = sum(len(batches) for batches in epochs) // len(epochs)
            print(f"start: {type(model).__name__} ({params / 1e6:.1f}M parameters), task {task.name}: "
                  f"{len(data.train)} train / {len(data.evals[task.eval_splits[0]])} dev examples; "
                  f"{len(epochs)} epochs x {steps} steps of {step_batch} examples; {runtime.device}, "
                  f"{runtime.precision.name}, compile {'on' if runtime.compile else 'off'}, {world_size()} process(es); "
                  f"out {files.out}", flush=True)

    # what cmi.loop.fit calls: the run's files, and the step lines also into TensorBoard and the heartbeat
    def started(self, state):
        return self.files.started(state)

    def log_step(self, epoch: int, steps: int, t0: float, i: int, values: dict) -> None:
        line = self.files.log_step(epoch, steps, t0, i, values)
        if rank() == 0:
            if self.board is not None:
                self.board.step(line)
            self.heartbeat.beat(line, i, steps, time.perf_counter() - t0)

    def end_epoch(self, state, metrics: dict, primary: str, line: dict) -> None:
        self.files.end_epoch(state, metrics, primary, line)

    def results(self) -> dict:
        return self.files.results()

    def done(self, results: dict) -> None:
        """The run is finished: results.json (with the settings), TensorBoard closed, the done line."""
        self.files.save_results(results, self.runtime.device, self.settings)
        if self.board is not None:
            self.board.close()
        if rank() == 0:
            metrics = ", ".join(f"{k} {100 * results[k]:.1f}" for k in self.task.metrics if k in results)
            print(f"done: best epoch {results['best_epoch']} of {self.epochs}: {metrics} (%), dev CMI "
                  f"{results['eval_cmi']:.3g}; the model: {self.files.best}", flush=True)
