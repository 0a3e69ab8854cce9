"""The files of a run (args.json, metrics.jsonl, steps.jsonl, last.pt, best/, results.json) and the state a resumed run
needs. Every file is written through common.files: a kill at any instant leaves the old or the new version of
each file, never a torn one."""
import datetime
import fcntl
import io
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.distributed as dist

from cmi.distributed import model_state, rank, world_size
from common.errors import TrainingError
from common.files import first_line, write_file
from harness.cli import Interrupted, checkpoint_identity
from models.lora import merged_state, save_adapter


def atomic_write(path: Path, write) -> None:
    """Write `path` atomically (common.files.write_file): `write(f)` fills the binary file. A failure (a full
    disk) raises TrainingError and leaves the previous version of `path`."""
    try:
        write_file(path, write)
    except OSError as e:
        raise TrainingError(f"{path}: writing failed ({e.strerror or e}); the previous version is kept") from None


@contextmanager
def signals_held():
    """SIGINT and SIGTERM held back until the block ends, then raised again. torch.save's C++ writer turns an
    exception raised in its write callback, as run_main's handler raises one, into a RuntimeError ('unexpected
    pos'): a SIGTERM while last.pt was written ended the run as a bug (exit code 1), without its advice to resume.
    The handlers are swapped, not the signals blocked: a blocked thread's signal goes to another thread of the
    process, and Python runs its handler in the main thread all the same."""
    held = []

    def hold(signum, frame):
        held.append(signum)

    previous = {s: signal.signal(s, hold) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for s in held[:1]:
            signal.raise_signal(s)


def to_json(obj, **kwargs) -> str:
    """json.dumps that refuses NaN and Infinity (not JSON: other tools cannot read them) with one clear line."""
    try:
        return json.dumps(obj, allow_nan=False, **kwargs)
    except ValueError:
        bad = sorted(k for k, v in obj.items() if isinstance(v, float) and not math.isfinite(v))
        raise TrainingError(f"non-finite values ({', '.join(bad) or 'nested'}) cannot be written as JSON; "
                            "the run's files are left as they were") from None


def write_json(path: Path, obj) -> None:
    """Write `obj` as indented JSON, atomically."""
    text = to_json(obj, indent=2) + "\n"
    atomic_write(path, lambda f: f.write(text.encode()))


# What is no part of a run's identity: where its folder is (relative, absolute, moved), what becomes of last.pt at
# the end, and how it is logged
# flags that change neither what a run computes nor its files' contents: a run may resume with or without them
NOT_IDENTITY = {"resume", "overwrite", "out", "keep_last", "log_every", "tensorboard", "gradient_checkpointing"}


def differences(saved: dict, args: dict, ignored=()) -> list[str]:
    """The arguments (but NOT_IDENTITY and `ignored`) in which a saved run (its args.json) and `args` differ,
    compared as args.json holds them (a tuple as a list). The data is compared by its identity ("data":
    harness.cli.data_identity, resolved paths and contents), not by how the flags spell its paths (tr.csv,
    ./tr.csv); a run saved before args.json recorded it is compared on the rest. A flag that one side predates
    (a run saved before --lora-r existed) is the same while the other side leaves it off (None, False, 0): every
    flag added since is off by default, and so was the run."""
    args = json.loads(to_json(args))
    spelled = {"train_file", "validation_file", "data_dir"} if "data" in saved else {"data"}
    skip = NOT_IDENTITY | set(ignored) | spelled

    def differs(key: str) -> bool:
        if key in saved and key in args:
            return saved[key] != args[key]
        return (saved if key in saved else args)[key] not in (None, False, 0)

    return sorted(k for k in set(saved) | set(args) if k not in skip and differs(k))


def read_run_json(path: Path):
    """A JSON file of a run (args.json), or TrainingError naming it."""
    try:
        return json.loads(path.read_bytes())
    except (OSError, ValueError) as e:
        raise TrainingError(f"{path}: cannot read it ({getattr(e, 'strerror', None) or e}); "
                            "--overwrite starts afresh") from None


class RunFiles:
    """The files of a run under `out`: args.json, metrics.jsonl, steps.jsonl, last.pt, best/, results.json (and
    adapter/ with LoRA).

    The folder is locked (an flock on run.lock) for the life of the object: a second process on the same
    folder is refused at once. A folder that holds another run is refused unless `resume` (continue it: the
    arguments must match) or `overwrite` (replace it). Overwriting is safe: `start` moves the old run's files
    into .replaced/ instead of deleting them, and they are deleted only once the new run has written its first
    checkpoint (`save_checkpoint`); a run that fails before then gets them back (`restore`), and one killed
    before then finds them restored when it is started again.

    `checkpoints`: the checkpoint folders the run starts from, by flag ({"--model": DIR}). last.pt records what each
    held (harness.cli.checkpoint_identity), and a resume refuses one that holds another checkpoint since. The run's
    own best/ (a run that overwrites the run it starts from) is left out: the run itself rewrites it."""

    # tensorboard/ (--tensorboard) is one of them: --overwrite moves it aside with the rest, and puts it back
    FILES = ("args.json", "metrics.jsonl", "steps.jsonl", "last.pt", "results.json", "best", "adapter", "tensorboard")

    def __init__(self, out: str | Path, args: dict, resume: bool = False, overwrite: bool = False,
                 keep_last: bool = False, checkpoints: dict[str, str | None] | None = None):
        self.out, self.args, self.overwrite, self.keep_last = Path(out), args, overwrite, keep_last
        self.metrics, self.steps, self.best = self.out / "metrics.jsonl", self.out / "steps.jsonl", self.out / "best"
        self.adapter = self.out / "adapter"
        self.last, self.replaced, self.moving = self.out / "last.pt", self.out / ".replaced", self.out / ".replacing"
        self.checkpoints = {flag: path for flag, path in (checkpoints or {}).items()
                            if path is not None and Path(path).resolve() != self.best.resolve()}
        self.holds_old_run = False  # set by _check
        self.lock = self._lock() if rank() == 0 else None
        try:
            self._check(resume)
            self.identities = {flag: checkpoint_identity(path) for flag, path in self.checkpoints.items()}
        except BaseException:
            self.__exit__(*sys.exc_info())
            raise

    def _check(self, resume: bool) -> None:
        self.restore()  # an earlier --overwrite killed before its first checkpoint: the old run comes back
        existing = [name for name in self.FILES if (self.out / name).exists()]
        self.resuming = resume and self.last.exists()
        # until this run's first checkpoint the folder holds the run --overwrite is to replace (`restore` puts it back)
        self.holds_old_run = self.overwrite and not self.resuming and bool(existing)
        if resume and (self.out / "args.json").exists():
            saved = read_run_json(self.out / "args.json")
            diff = differences(saved, self.args)  # the data included: a training file changed since is refused
            if diff:
                raise TrainingError(f"--resume: {self.out} holds a run with other arguments ({', '.join(diff)})")
            if not self.resuming and (self.out / "results.json").exists():
                raise TrainingError(f"--resume: {self.out} holds a finished run (results.json, and no last.pt to "
                                    "continue from); --overwrite starts afresh")
        elif existing and not (resume or self.overwrite):
            raise TrainingError(f"{self.out} already holds a run ({', '.join(existing)}); "
                                "pass --resume to continue it or --overwrite to replace it")
        elif resume and rank() == 0:
            print(f"warning: --resume: {self.out} holds no run to resume; a new run begins there", file=sys.stderr)

    def __enter__(self) -> "RunFiles":
        return self

    def __exit__(self, exc_type=None, exc=None, traceback=None) -> None:
        """Release the folder's lock (the end of the run, or a failure before it). A folder this run created
        and left empty (it failed before writing anything) is removed again. An interruption while the folder
        holds the run --overwrite was to replace advises to run the command again: --resume would take up that
        old run, or refuse its other arguments."""
        if self.lock is not None:
            self.lock.close()
            self.lock = None
            if self.created and [p.name for p in self.out.iterdir()] == ["run.lock"]:
                (self.out / "run.lock").unlink()
                self.out.rmdir()
        if isinstance(exc, KeyboardInterrupt) and self.holds_old_run:
            raise Interrupted(str(exc) or "SIGINT", f"{self.out} still holds its earlier run (this one had no complete "
                              "epoch): run the same command again to replace it") from None

    def _lock(self):
        if self.out.exists() and not self.out.is_dir():
            raise TrainingError(f"--out {self.out}: exists and is not a folder")
        self.created = not self.out.exists()
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            lock = open(self.out / "run.lock", "a")
        except OSError as e:
            raise TrainingError(f"--out {self.out}: cannot create the run folder ({e.strerror or e})") from None
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise TrainingError(f"--out {self.out}: another process is running in this folder (it holds "
                                f"{self.out / 'run.lock'}); wait for it or choose another --out") from None
        return lock

    def start(self) -> dict | None:
        """Return the checkpoint to resume from (None for a fresh run), its random-number state restored, or set
        the folder up for a fresh run. Under DDP every process reads the checkpoint (`--out` must be on a file
        system they share); only rank 0 writes."""
        if self.resuming:
            try:  # weights_only: tensors and plain containers, never code
                ckpt = torch.load(self.last, map_location="cpu", weights_only=True)
            except Exception as e:
                raise TrainingError(f"{self.last}: cannot resume from it ({first_line(e)}); "
                                    "--overwrite starts afresh") from None
            recorded = ckpt.get("checkpoints", {})  # none in a last.pt written before they were recorded
            for flag, identity in self.identities.items():
                old, new = recorded.get(flag, identity) or {}, identity or {}
                changed = sorted(name for name in old.keys() | new.keys() if old.get(name) != new.get(name))
                if changed:
                    raise TrainingError(f"--resume: {flag} {self.checkpoints[flag]} does not hold the checkpoint the "
                                        f"run in {self.out} began with ({', '.join(changed)} changed since); put it "
                                        "back to continue, or --overwrite starts afresh")
            if len(ckpt["rng"]) != world_size():
                raise TrainingError(f"{self.last}: the run was started with {len(ckpt['rng'])} processes, "
                                    f"resume it with the same number (not {world_size()})")
            set_rng_state(ckpt["rng"][rank()])
            if rank() == 0:  # a kill between the metrics line and the checkpoint leaves an epoch to be redone
                lines = [line for line in self._metric_lines() if json.loads(line)["epoch"] <= ckpt["epoch"]]
                atomic_write(self.metrics, lambda f: f.write("".join(lines).encode()))
                atomic_write(self.steps, lambda f: f.write("".join(self.step_lines(ckpt["epoch"])).encode()))
            return ckpt
        if rank() != 0:
            return None
        # a fresh start: --overwrite, or --resume of a run killed before its first checkpoint (whose
        # metrics.jsonl may already hold the line of the epoch it is about to redo); the old files are moved
        # aside, not deleted, until this run's first checkpoint: into .replacing/, named .replaced/ once all are in,
        # so that `restore` never takes an old file that a stop in between left in place for one of this run's
        old = [name for name in self.FILES if (self.out / name).exists()]
        if old:
            self.moving.mkdir()
            for name in old:
                os.replace(self.out / name, self.moving / name)
            os.replace(self.moving, self.replaced)
        write_json(self.out / "args.json", self.args)
        return None

    @contextmanager
    def started(self, state):
        """`start`, and when resuming the training `state` (cmi.loop.TrainState) restored from the checkpoint; the
        body gets the first epoch to train (1, or the one after the checkpoint's). If `start` (an interruption while it
        moves the old run aside) or the body fails before the run's first checkpoint, `restore`."""
        try:
            ckpt = self.start()
            self.best_epoch = None  # the best epoch so far, {"epoch", "metrics"}
            if ckpt is not None:
                state.load_state_dict(ckpt)
                self.best_epoch = ckpt["best"]
            yield 1 if ckpt is None else ckpt["epoch"] + 1
        except BaseException:
            self.restore()
            raise

    def restore(self) -> None:
        """Put back the run that `start` moved aside, removing what the new run wrote (no-op once the new run
        has a checkpoint: then .replaced/ is gone)."""
        if rank() != 0:
            return
        if self.moving.is_dir():  # `start` stopped while moving the old run aside: nothing new written yet
            for path in self.moving.iterdir():
                os.replace(path, self.out / path.name)
            self.moving.rmdir()
        if not self.replaced.is_dir():
            return
        for name in self.FILES:
            path = self.out / name
            if (self.replaced / name).exists():
                shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
                os.replace(self.replaced / name, path)
            elif path.exists():  # written by the new run, which had no old counterpart
                shutil.rmtree(path) if path.is_dir() else path.unlink()
        for leftover in self.out.glob(".*.tmp"):  # a write of the new run that a kill interrupted
            shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
        shutil.rmtree(self.replaced)

    def _metric_lines(self) -> list[str]:
        try:
            lines = self.metrics.read_text().splitlines(keepends=True) if self.metrics.exists() else []
            for line in lines:
                json.loads(line)["epoch"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise TrainingError(f"{self.metrics}: damaged, cannot continue it ({e}); --overwrite starts afresh") from None
        return lines

    def step_lines(self, last_epoch: float = math.inf) -> list[str]:
        """The lines of steps.jsonl up to `last_epoch`: those of an epoch a kill interrupted are redone, and a
        line the kill tore is dropped (steps.jsonl is appended to, so that it can be followed as it grows)."""
        lines = []
        for line in self.steps.read_text().splitlines(keepends=True) if self.steps.exists() else []:
            try:
                if json.loads(line)["epoch"] <= last_epoch:
                    lines.append(line)
            except (ValueError, KeyError, TypeError):
                pass
        return lines

    def log_step(self, epoch: int, steps: int, t0: float, i: int, values: dict) -> dict:
        """The line of step `i` of `steps` of `epoch` (begun at perf_counter `t0`, unused here: RunLog's heartbeat
        reads it): appended to steps.jsonl (rank 0) and flushed at once, and returned."""
        line = {"epoch": epoch, "step": (epoch - 1) * steps + i, **values}
        if rank() == 0:
            try:
                with open(self.steps, "a") as f:
                    f.write(to_json(line) + "\n")
            except OSError as e:  # a full disk: a line it tore is dropped on resume (step_lines)
                raise TrainingError(f"{self.steps}: writing failed ({e.strerror or e}); the lines before are "
                                    "kept") from None
        return line

    def log_epoch(self, record: dict) -> None:
        if rank() != 0:
            return
        lines = self._metric_lines() + [to_json(record) + "\n"]
        atomic_write(self.metrics, lambda f: f.write("".join(lines).encode()))

    def save_checkpoint(self, state: dict) -> None:
        """last.pt: `state`, the random-number states of every process (called by all of them) and what the
        checkpoint folders held (`checkpoints`). Serialised in memory first (once the size of last.pt): torch.save's
        zip writer turns a failed write into a RuntimeError without errno ('unexpected pos'), where writing bytes
        fails with the OSError of a full disk, one line naming last.pt."""
        state = {**state, "rng": rng_states(), "checkpoints": self.identities}
        self.holds_old_run = False  # on every process: the old run goes once this checkpoint is in place
        if rank() == 0:
            with signals_held():  # a SIGTERM meanwhile ends the run once the epoch's checkpoint is in place
                buffer = io.BytesIO()
                torch.save(state, buffer)
                atomic_write(self.last, lambda f: f.write(buffer.getbuffer()))
                shutil.rmtree(self.replaced, ignore_errors=True)  # the new run can resume now: the old one goes

    def save_best(self, model) -> None:
        """best/: the model as a checkpoint of its architecture; with LoRA, the adapters merged into it, and
        adapter/ the adapters and head alone in peft's layout (models/lora.py)."""
        state = model_state(model)  # on every process: FSDP2 gathers its shards
        if rank() == 0:
            model.save_pretrained(self.best, state_dict=state if model.lora is None else merged_state(model, state))
            if model.lora is not None:
                save_adapter(model, self.adapter, self.args["model"], state)

    def end_epoch(self, state, metrics: dict, primary: str, line: dict) -> None:
        """An epoch is done: its metrics `line` refused if a value is not finite (a broken model is never saved as
        the best, nor NaN written into a JSON file); best/ saved if the dev metric `primary` beats the best epoch's;
        the line appended to metrics.jsonl and printed; last.pt written from the training `state`."""
        epoch = line["epoch"]
        bad = [k for k, v in line.items() if isinstance(v, float) and not math.isfinite(v)]
        if bad:
            raise TrainingError(f"epoch {epoch}: {', '.join(bad)} not finite (a learning rate too high?); "
                                "the model is not saved, the last checkpoint of the run is intact")
        if self.best_epoch is None or metrics[primary] > self.best_epoch["metrics"][primary]:
            self.save_best(state.raw_model)
            self.best_epoch = {"epoch": epoch, "metrics": metrics}
        self.log_epoch(line)
        self.save_checkpoint({"epoch": epoch, "best": self.best_epoch, **state.state_dict()})
        if rank() == 0:
            print(json.dumps(line), flush=True)

    def results(self) -> dict:
        """The run's results: its arguments, the best epoch and that epoch's dev metrics."""
        return {"args": self.args, "best_epoch": self.best_epoch["epoch"], **self.best_epoch["metrics"]}

    def save_results(self, results: dict, device: torch.device, settings: dict) -> None:
        """The run is finished: results.json with its provenance and `settings` (how it computed,
        harness.runlog.settings), then last.pt goes (3x the model on disk), unless keep_last."""
        if rank() == 0:
            write_json(self.out / "results.json", {**results, "provenance": {**provenance(device), **settings}})
            if not self.keep_last:
                self.last.unlink(missing_ok=True)


def provenance(device: torch.device) -> dict:
    """What made a run: the code's git commit (and whether the work tree had uncommitted changes), the torch
    version, the device and the date, so a committed result names the code that can repeat it."""
    root = Path(__file__).resolve().parent.parent

    def git(*argv) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(root), *argv], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    status = git("status", "--porcelain", "--untracked-files=no")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    return {"commit": git("rev-parse", "HEAD"), "dirty": None if status is None else bool(status),
            "torch": torch.__version__, "device": f"{device.type} ({name})",
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def rng_states() -> list[dict]:
    """The random-number states of every process (dropout, masking), so a resumed run repeats exactly."""
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    if world_size() == 1:
        return [state]
    states = [None] * world_size()
    dist.all_gather_object(states, state)
    return states


def set_rng_state(state: dict) -> None:
    """Restore one process's random-number state, as `rng_states` saved it."""
    torch.set_rng_state(state["cpu"])
    if "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"])
