"""The training loop: PIT SI-SDR, plateau halving, early stopping, and exact resume.

An experiment directory (see :func:`~dnnsep.training.config.experiment_dir`) holds::

    config.yaml         the resolved config (every key)      environment.yaml  git commit, versions
    model/last.pth      everything needed to continue        model/best.pth    the best model, portable
    log/train.log       one line per epoch (appended)        loss/loss.csv, loss/loss.png

``last.pth`` is written atomically at the end of every epoch (and every ``save_every_steps``
steps).  It holds the model, optimizer, plateau and AMP-scaler states, the epoch and the step
within it, counters, the loss history and the RNG states; the data order is a function of
``(seed, epoch)`` (:class:`~dnnsep.training.sampler.EpochBatchSampler`), so a resumed run sees the
same batches in the same order and, on CPU, ends with the same weights as an uninterrupted one.

On CUDA the loop does not wait for the GPU at every step: the loss sum stays on the device and is
read every :data:`LOSS_READ_EVERY` steps (the progress bar), before a save and at the epoch's end,
and the loss and gradient checks share one host sync per step.  ``DNNSEP_PROFILE_STEPS=N`` logs
where the first N steps of each epoch spend their time (:mod:`~dnnsep.training.steptime`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from .. import __version__
from ..checkpoint import remove_stale_temporaries, save_checkpoint
from ..device import guard_mps
from ..errors import DnnsepError
from ..locking import hold
from ..losses import pit_si_sdr, si_sdr
from . import distributed
from .amp import amp_dtype, autocast, describe, uses_scaler
from .config import TrainConfig, experiment_dir, save_yaml
from .experiment import Experiment
from .records import (
    HISTORY_KEYS,
    close_logger,
    environment,
    make_logger,
    plot_history,
    write_environment,
    write_history_csv,
    write_text,
)
from .sampler import EpochBatchSampler, EpochItems, EpochKeys
from .schedule import learning_rate
from .start import (
    FORMAT_VERSION,
    MODEL_KIND,
    TRAINING_KIND,
    check_start,
    collate_by_length,
    make_datasets,
    make_optimizer,
    process_batch,
    unfuse_where_unsupported,
)
from .state import Plateau, rng_state, set_rng_state
from .steptime import StepTimes, profile_steps

LOSS_READ_EVERY = 50  # steps between reads of the on-device loss sum (CUDA), for the progress bar
PLOT_EVERY_SECONDS = 30.0  # loss/loss.png is redrawn at most this often, and when the run stops or pauses


@dataclass
class Progress:
    """Counters saved in ``last.pth``; ``epoch`` epochs are finished, plus ``step`` steps of the next."""

    epoch: int = 0
    step: int = 0
    global_step: int = 0
    loss_sum: float = 0.0  # this epoch so far, over finite steps
    loss_count: int = 0
    seconds: float = 0.0  # this epoch so far
    clock_seconds: float = 0.0  # wall time of training so far, all epochs and runs (lr_clock: time)
    nonfinite_total: int = 0
    nonfinite_run: int = 0  # in a row
    stopped: str | None = None  # why training ended (early stopping, all epochs done)


class NonFiniteLossError(DnnsepError):
    """Too many non-finite losses in a row; training stopped without writing anything."""


class Trainer:
    """Train any registered model on ``(mixture (time,), sources (n_sources, time))`` datasets.

    ``train_set``/``valid_set`` default to the recipe's mixture lists under ``cfg.dataset_dir``.
    Call :meth:`fit`.  Under torchrun every process builds a Trainer; only rank 0 writes.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        out_dir: str | os.PathLike,
        *,
        resume: str | os.PathLike | None = None,
        train_set: Dataset | None = None,
        valid_set: Dataset | None = None,
        dist: distributed.Dist | None = None,
        device: torch.device | None = None,
    ):
        if dist is None or device is None:
            dist, device = distributed.init(cfg.device)
        self.cfg, self.dist, self.device = cfg, dist, device
        self.exp = experiment_dir(cfg, out_dir)
        self.experiment = Experiment(self.exp)
        self.last_path, self.best_path = self.experiment.last, self.experiment.best
        error, ckpt = None, None
        self._lock = contextlib.ExitStack()  # one writer per experiment: rank 0 holds it for the run
        self._plotted_at: float | None = None  # time.monotonic() of the last loss.png (see _plot)
        self._plot_pending = False  # epochs since then not drawn yet
        try:  # every process checks, then all agree, so none is left waiting in a collective
            if dist.is_main:
                self._lock.enter_context(hold(self.exp, what="experiment"))
                remove_stale_temporaries(self.experiment.model_dir)
            ckpt = check_start(cfg, self.exp, resume)
            if train_set is None or valid_set is None:
                train_set, valid_set = make_datasets(cfg)
        except DnnsepError as err:
            error = err
            self._lock.close()
        distributed.agree(error, dist)
        try:
            self._setup(cfg, resume, ckpt, train_set, valid_set, device)
        except BaseException:
            self._lock.close()
            raise

    def _setup(self, cfg, resume, ckpt, train_set, valid_set, device) -> None:
        dist = self.dist
        self.train_set, self.valid_set = train_set, valid_set

        with torch.random.fork_rng(devices=[]):  # the initial weights depend on the seed alone
            torch.manual_seed(cfg.seed)
            self.model = cfg.build_model().to(device)
        if device.type == "mps":  # checked against the CPU first; may train on the CPU instead
            self.model, self.device = guard_mps(self.model)
            device = self.device
        self.amp_dtype = amp_dtype(device) if cfg.amp else None  # the policy: see training.amp
        self.amp = self.amp_dtype is not None
        self.optimizer = make_optimizer(cfg, self.model)
        self.scaler = torch.amp.GradScaler(device.type, enabled=uses_scaler(self.amp_dtype, device))
        self.one_sync = device.type == "cuda"  # the CUDA step: see _step_one_sync
        self._loss_pending: torch.Tensor | None = None  # loss sum not yet in progress.loss_sum (one_sync)
        self._loaders: dict[str, DataLoader] = {}  # persistent-worker loaders, made once
        self.step_times = StepTimes(profile_steps(), device)
        self.plateau = Plateau(lr_patience=cfg.lr_patience, stop_patience=cfg.early_stop_patience)
        self.progress = Progress()
        self._deadline: float | None = None  # perf_counter time at which fit(max_seconds=) pauses
        self._now = time.perf_counter  # the budget's clock (a test may fake it)
        self._clock_origin = 0.0  # _now() when the budget's clock read 0 (set by fit)
        self._budget_fraction = 0.0  # lr_clock time: the fraction of the budget spent, as all processes agree
        self._budget_spent = False
        self.history: dict[str, list[float]] = {k: [] for k in HISTORY_KEYS}
        self.events: list[list[Any]] = []  # [epoch, label]: lr halvings, the stop
        batch = process_batch(cfg, dist, device)
        self.sampler = EpochBatchSampler(
            len(train_set), batch_size=batch, seed=cfg.seed, rank=dist.rank, world_size=dist.world_size
        )
        self.valid_sampler = EpochBatchSampler(
            len(valid_set),
            batch_size=batch,
            seed=cfg.seed,
            shuffle=False,
            rank=dist.rank,
            world_size=dist.world_size,
            pad=False,
        )
        self.ddp = self.model
        if dist.active:
            ids = [device.index] if device.type == "cuda" else None
            self.ddp = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        self.log = make_logger(self.experiment.log_dir / "train.log" if dist.is_main else None)
        try:
            self._start(resume, ckpt)
        except BaseException:
            close_logger(self.log)
            raise

    # -- start: refuse to overwrite, resume, record ----------------------------------------------

    def _start(self, resume: str | os.PathLike | None, ckpt: dict[str, Any] | None) -> None:
        cfg, log = self.cfg, self.log
        env = environment(self.device, self.dist.world_size)
        if self.dist.is_main:
            self.experiment.model_dir.mkdir(parents=True, exist_ok=True)
            if ckpt is None:  # a resume leaves the records of the start as they are; the log says the rest
                write_text(self.exp / "config.yaml", save_yaml(cfg))
                write_environment(self.exp / "environment.yaml", env)
        distributed.barrier(self.dist)
        n_params = sum(p.numel() for p in self.model.parameters())
        log.info(f"command: {env['command']}  (in {env['cwd']})")
        if ckpt is not None:
            log.info(
                f"dnnsep {env['versions']['dnnsep']}, git {env['git']['commit'][:12]}, torch {env['versions']['torch']}"
            )
        log.info(f"experiment {self.exp}")
        mixed = f", mixed precision ({describe(self.amp_dtype, scaled=self.scaler.is_enabled())})" if self.amp else ""
        log.info(
            f"model {self.model.model_name}, {n_params / 1e6:.3f} M parameters; device {self.device}{mixed}; "
            f"{self.dist.world_size} process(es)"
        )
        log.info(
            f"data: {len(self.train_set)} training mixtures ({self.sampler.steps_per_epoch()} steps per epoch), "
            f"{len(self.valid_set)} validation mixtures"
        )
        if cfg.reverb != "none" or cfg.noise != "none":
            from ..data.scene import options_from_config

            log.info(f"rooms and noise: {options_from_config(cfg).describe()}; target {cfg.reverb_target}")
        if cfg.lr_clock == "time":
            log.info(
                f"schedule: {cfg.lr_schedule} over a budget of {cfg.max_minutes:g} min of training (lr_clock: time), "
                f"which then ends it; warm-up over the first {cfg.warmup_steps} steps"
            )
        if cfg.amp and not self.amp:
            log.info(
                f"amp ignored: mixed precision needs CUDA or a CPU with bfloat16 instructions (AVX-512 BF16, "
                f"AMX); running on {self.device} without them"
            )
        if ckpt is None:
            return
        self.model.load_state_dict(ckpt["state_dict"])
        self.optimizer.load_state_dict(ckpt["optimizer"])  # its groups' options too: a run resumes as it began
        unfuse_where_unsupported(self.optimizer)
        self.plateau.load_state_dict(ckpt["plateau"])
        if self.scaler.is_enabled() and ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        self.progress = Progress(**ckpt["progress"])
        self.history = {k: [float(v) for v in ckpt["history"][k]] for k in HISTORY_KEYS}
        self.events = [list(e) for e in ckpt["events"]]
        set_rng_state(ckpt["rng"])
        if ckpt["sampler"]["world_size"] != self.dist.world_size:
            log.info(
                f"note: the checkpoint was trained by {ckpt['sampler']['world_size']} process(es), now "
                f"{self.dist.world_size}: batches differ from an uninterrupted run"
            )
        p = self.progress
        log.info(f"resumed from {resume}: {p.epoch} epoch(s) done" + (f" and {p.step} step(s)" if p.step else ""))

    # -- training --------------------------------------------------------------------------------

    def fit(self, *, max_seconds: float | None = None) -> dict[str, Any]:
        """Train until the last epoch, early stopping or ``stop_after_epoch``; return a summary.

        ``max_seconds``: also pause (``last.pth`` written, resumable mid-epoch) at the first step that
        ends after this many seconds of this call (time slices, e.g. bench/bench_quality.py).
        """
        cfg, p = self.cfg, self.progress
        self._deadline = None if max_seconds is None else time.perf_counter() + max_seconds
        self._clock_origin = self._now() - p.clock_seconds
        if cfg.lr_clock == "time":  # the budget ends training; a max_seconds slice may pause it sooner
            self._budget_fraction = min(1.0, p.clock_seconds / self._budget_seconds())
            self._deadline = math.inf if max_seconds is None else self._now() + max_seconds  # on the budget's clock
        try:
            if p.stopped:
                self.log.info(f"nothing to do: training had ended ({p.stopped})")
            while p.stopped is None and p.epoch < cfg.epochs:
                if not self._train_epoch() and not self._budget_spent:
                    self._save_last()
                    self._plot_held_back()
                    self.log.info(f"paused after {max_seconds:g} s (epoch {p.epoch + 1}, step {p.step})")
                    break
                self._end_epoch()
                if p.stopped is None and cfg.stop_after_epoch is not None and p.epoch >= cfg.stop_after_epoch:
                    self._plot_held_back()
                    self.log.info(
                        f"paused after epoch {p.epoch} (stop_after_epoch); continue with MODEL_PATH {self.last_path}"
                    )
                    break
        finally:
            close_logger(self.log)
            self._lock.close()
        return {
            "experiment_dir": self.exp,
            "epoch": p.epoch,
            "stopped": p.stopped,
            "history": self.history,
            "best_valid_loss": self.plateau.best,
            "best_epoch": self.plateau.best_epoch,
            "nonfinite_total": p.nonfinite_total,
        }

    def _train_epoch(self) -> bool:
        """Train the rest of this epoch; False if the deadline of :meth:`fit` stopped it first."""
        cfg, p = self.cfg, self.progress
        epoch = p.epoch  # 0-based index of the epoch being trained
        self.sampler.set_epoch(epoch, start_step=p.step)  # the data set learns the epoch from each key
        loader = self._loader(
            "train",
            EpochItems(self.train_set),
            batch_sampler=EpochKeys(self.sampler),
            generator=torch.Generator().manual_seed(cfg.seed * 100_003 + epoch),  # worker seeds (persistent
        )  # workers keep their first epoch's: data sets draw their randomness from (seed, epoch, index))
        total = self.sampler.steps_per_epoch()
        bar = tqdm(
            total=total,
            initial=p.step,
            desc=f"epoch {epoch + 1}/{cfg.epochs} train",
            unit="step",
            disable=not self.dist.is_main,
            leave=False,
            dynamic_ncols=True,
        )
        self.ddp.train()
        started = time.perf_counter() - p.seconds
        times = self.step_times
        times.reset()
        with bar:
            times.start()
            for mixture, sources in loader:
                self._step(mixture, sources)
                p.step += 1
                p.global_step += 1
                p.seconds = time.perf_counter() - started
                bar.update(1)
                if not self.one_sync or p.step % LOSS_READ_EVERY == 0:
                    self._read_loss()
                    if p.loss_count:
                        bar.set_postfix(loss=f"{p.loss_sum / p.loss_count:.3f}", refresh=False)
                if cfg.save_every_steps and p.global_step % cfg.save_every_steps == 0 and p.step < total:
                    self._read_loss()
                    self._save_last()
                times.start()
                if self._deadline is not None and self._past_deadline() and (p.step < total or self._budget_spent):
                    self._read_loss()
                    return False
        self._read_loss()
        if times.limit and times.steps:
            self.log.info(f"epoch {epoch + 1}: {times.summary()}")
        return True

    def _past_deadline(self) -> bool:
        """Whether :meth:`fit`'s time is up, in any process: all of them stop at the same step, none waits.

        With ``lr_clock: time`` it also updates the fraction of the budget spent, the largest of the
        processes' clocks, so that every process takes the same learning rate at the next step.  Under
        DDP on CUDA the processes agree every :data:`LOSS_READ_EVERY` steps only, so that a step keeps
        its one host sync (the agreement is an all-reduce read back on the host).
        """
        if self.dist.active and self.one_sync and self.progress.step % LOSS_READ_EVERY:
            return False
        if self.cfg.lr_clock == "time":  # one all-reduce: the budget's clock decides both
            (elapsed,) = distributed.all_max([self._now() - self._clock_origin], self.dist, self.device)
            self._budget_fraction = min(1.0, elapsed / self._budget_seconds())
            self._budget_spent = self._budget_fraction >= 1.0
            return self._budget_spent or self._clock_origin + elapsed > self._deadline
        past = time.perf_counter() > self._deadline
        return not distributed.all_true(not past, self.dist, self.device)

    def _budget_seconds(self) -> float:
        return 60.0 * self.cfg.max_minutes

    def _loader(self, name: str, dataset: Dataset, **options: Any) -> DataLoader:
        """A DataLoader over ``dataset``; with workers, made once and kept (its workers persist).

        Pinned memory on CUDA, so the copies to the device (``non_blocking``) overlap compute.
        """
        workers = self.cfg.num_workers
        if workers and name in self._loaders:
            return self._loaders[name]
        loader = DataLoader(
            dataset,
            num_workers=workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=workers > 0,
            **options,
        )
        if workers:
            self._loaders[name] = loader
        return loader

    def _read_loss(self) -> None:
        """Add the on-device loss sum (CUDA) to ``progress.loss_sum``: one host sync."""
        if self._loss_pending is not None:
            self.progress.loss_sum += self._loss_pending.item()
            self._loss_pending = None

    def _step(self, mixture: torch.Tensor, sources: torch.Tensor) -> None:
        """One optimizer step on ``mixture (batch, time)`` and ``sources (batch, n_sources, time)``."""
        times = self.step_times
        for group in self.optimizer.param_groups:  # warm-up and schedule (see learning_rate)
            group["lr"] = self.learning_rate(self.progress.global_step)
        mixture = mixture.to(self.device, non_blocking=True)
        sources = sources.to(self.device, non_blocking=True)
        times.mark("data")
        with autocast(self.device, self.amp_dtype):
            estimates = self.ddp(mixture)  # (batch, n_sources, time)
        loss = pit_si_sdr(estimates.float(), sources, threshold_db=self.cfg.loss_threshold).loss  # float32
        times.mark("forward")
        if self.one_sync:
            return self._step_one_sync(loss)
        if not distributed.all_true(bool(torch.isfinite(loss)), self.dist, self.device):
            self.optimizer.zero_grad(set_to_none=True)  # all processes skip together: no backward, no all-reduce
            return self._nonfinite("loss")
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        max_norm = self.cfg.clip_grad_norm or math.inf
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm)
        times.mark("backward")
        if not self.scaler.is_enabled() and not torch.isfinite(norm):  # (a scaler skips such steps itself)
            self.optimizer.zero_grad(set_to_none=True)
            return self._nonfinite("gradient")
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        times.mark("optimizer")
        p = self.progress
        p.loss_sum += loss.item()
        p.loss_count += 1
        p.nonfinite_run = 0

    def _step_one_sync(self, loss: torch.Tensor) -> None:
        """The rest of :meth:`_step` with one host sync (CUDA): backward first, then both checks at once.

        The same steps are skipped, counted and logged as on CPU; a skipped step has only had its
        backward pass (all processes run it, so none waits in an all-reduce).  With a scaler, the
        gradients are unscaled on the device first: an overflow shows as a non-finite norm, and such
        a step is the scaler's to skip (its scale falls), not counted as a fault.  The optimizer
        steps directly rather than through ``scaler.step``, which would read the overflow flag again.
        """
        times, max_norm, scaled = self.step_times, self.cfg.clip_grad_norm or math.inf, self.scaler.is_enabled()
        self.scaler.scale(loss).backward()
        if scaled:
            self.scaler.unscale_(self.optimizer)  # records the overflow flag on the device
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm)
        checks = torch.stack([torch.isfinite(loss.detach()), torch.isfinite(norm)]).int()
        loss_ok, grad_ok = distributed.all_true_flags(checks, self.dist)  # the step's one host sync
        times.mark("backward")
        if loss_ok and grad_ok:
            self.optimizer.step()
        if scaled:
            self.scaler.update()  # grows the scale after a good step, backs off after an overflow (no sync)
        self.optimizer.zero_grad(set_to_none=True)
        if not loss_ok or (not grad_ok and not scaled):
            return self._nonfinite("loss" if not loss_ok else "gradient")
        times.mark("optimizer")
        loss = loss.detach().double()  # counted after the scaler's overflow skip too, as on the CPU
        self._loss_pending = loss if self._loss_pending is None else self._loss_pending + loss
        p = self.progress
        p.loss_count += 1
        p.nonfinite_run = 0

    def learning_rate(self, step: int) -> float:
        """The learning rate of optimizer step ``step`` (0-based, over all epochs); see :mod:`.schedule`."""
        cfg = self.cfg
        halvings = sum(1 for _, label in self.events if str(label).startswith("lr "))
        by_steps = cfg.lr_schedule == "cosine" and cfg.lr_clock == "steps"  # else the total is not needed
        total = cfg.epochs * self.sampler.steps_per_epoch() if by_steps else 0
        return learning_rate(cfg, step, halvings=halvings, total_steps=total, budget_done=self._budget_fraction)

    def _nonfinite(self, what: str) -> None:
        p = self.progress
        p.nonfinite_total += 1
        p.nonfinite_run += 1
        where = f"epoch {p.epoch + 1} step {p.step + 1}"
        self.log.info(
            f"{where}: non-finite {what}, step skipped ({p.nonfinite_run} in a row, {p.nonfinite_total} in all)"
        )
        if p.nonfinite_run >= self.cfg.max_nonfinite:
            saved = f"the last good state is {self.last_path}" if self.last_path.exists() else "nothing was saved"
            message = (
                f"training stopped: {p.nonfinite_run} non-finite losses in a row at {where}; {saved} "
                "(lower --lr, check the data, or raise --max_nonfinite)"
            )
            self.log.info(message)
            raise NonFiniteLossError(message)

    @torch.inference_mode()
    def validate(self) -> tuple[float, float]:
        """Mean negative SI-SDR (PIT) and mean SI-SDR improvement over the validation set, in dB."""
        self.model.eval()
        loader = self._loader("valid", self.valid_set, batch_sampler=self.valid_sampler, collate_fn=collate_by_length)
        sums, count = [], 0  # per batch, on the device: read once, at the end
        bar = tqdm(
            loader,
            desc=f"epoch {self.progress.epoch + 1}/{self.cfg.epochs} valid",
            unit="batch",
            disable=not self.dist.is_main,
            leave=False,
            dynamic_ncols=True,
        )
        for groups in bar:
            for mixture, sources in groups:
                mixture = mixture.to(self.device, non_blocking=True)
                sources = sources.to(self.device, non_blocking=True)
                with autocast(self.device, self.amp_dtype):
                    estimates = self.model(mixture)  # (batch, n_sources, time)
                scores = pit_si_sdr(estimates.float(), sources).si_sdr.mean(1)  # (batch,)
                baseline = si_sdr(mixture.unsqueeze(1).expand_as(sources), sources).mean(1)  # (batch,)
                sums.append(torch.stack([-scores.sum(), (scores - baseline).sum()]))  # (2,)
                count += len(scores)
        self.model.train()
        # one host sync; float64 on the CPU (MPS has no float64)
        loss_sum, improvement_sum = torch.stack(sums).cpu().double().sum(0).tolist() if sums else (0.0, 0.0)
        loss_sum, improvement_sum, count = distributed.all_sum(
            [loss_sum, improvement_sum, count], self.dist, self.device
        )
        return (loss_sum / count, improvement_sum / count) if count else (math.nan, math.nan)

    def _end_epoch(self) -> None:
        cfg, p, log = self.cfg, self.progress, self.log
        loss_sum, loss_count = distributed.all_sum([p.loss_sum, p.loss_count], self.dist, self.device)
        train_loss = loss_sum / loss_count if loss_count else math.nan
        started = time.perf_counter() - p.seconds
        valid_loss, valid_improvement = self.validate()
        seconds = time.perf_counter() - started
        lr = self.optimizer.param_groups[0]["lr"]
        for key, value in zip(HISTORY_KEYS, (train_loss, valid_loss, valid_improvement, lr, seconds)):
            self.history[key].append(float(value))
        epoch = p.epoch + 1  # 1-based number of the epoch just finished
        action = self.plateau.step(valid_loss)
        p.epoch, p.step, p.loss_sum, p.loss_count, p.seconds = epoch, 0, 0.0, 0, 0.0
        note = ""
        if action == "improved":
            self._save_best(valid_loss, valid_improvement)
            note = "  (best)"
        elif action == "halve":
            halvings = 1 + sum(1 for _, label in self.events if str(label).startswith("lr "))
            new_lr = cfg.lr * cfg.lr_factor**halvings  # the next steps' (before warm-up or cosine factors)
            self.events.append([epoch, f"lr {new_lr:.2g}"])
            for group in self.optimizer.param_groups:
                group["lr"] = self.learning_rate(p.global_step)
            note = f"  (no improvement for {self.plateau.bad_epochs} epochs: lr -> {new_lr:.3g})"
        elif action == "stop":
            p.stopped = (
                f"early stopping after epoch {epoch}: no improvement for {self.plateau.bad_epochs} epochs "
                f"(best valid loss {self.plateau.best:.3f} at epoch {self.plateau.best_epoch})"
            )
            self.events.append([epoch, "early stop"])
        if p.stopped is None and (epoch >= cfg.epochs or self._budget_spent):
            best = f"best valid loss {self.plateau.best:.3f} at epoch {self.plateau.best_epoch}"
            if self._budget_spent:
                p.stopped = f"time budget of {cfg.max_minutes:g} min spent after {epoch} epoch(s) ({best})"
                self.events.append([epoch, "time budget"])
            else:
                p.stopped = f"finished {cfg.epochs} epoch{'s' if cfg.epochs > 1 else ''} ({best})"
        self._save_last()
        log.info(
            f"epoch {epoch}/{cfg.epochs}  train {train_loss:.3f}  valid {valid_loss:.3f}  "
            f"valid SI-SDRi {valid_improvement:.2f} dB  lr {lr:.3g}  {seconds:.1f} s{note}"
        )
        if p.nonfinite_total:
            log.info(f"  non-finite losses skipped so far: {p.nonfinite_total}")
        if self.dist.is_main:
            write_history_csv(self.experiment.loss_dir / "loss.csv", self.history)
            self._plot(force=bool(p.stopped) or action == "halve")  # the last state, and each lr event
        if p.stopped:
            log.info(p.stopped)

    def _plot(self, *, force: bool = False) -> None:
        """Redraw loss/loss.png (rank 0): when ``force``d, or :data:`PLOT_EVERY_SECONDS` after the last.

        A plot takes about 0.1 s, which the other processes wait out; at a few seconds an epoch (the
        main job's) plotting every epoch would cost 2-3% of the training time.
        """
        now = time.monotonic()
        if not force and self._plotted_at is not None and now - self._plotted_at < PLOT_EVERY_SECONDS:
            self._plot_pending = True
            return
        self._plotted_at, self._plot_pending = now, False
        plot_history(
            self.experiment.loss_dir / "loss.png",
            self.history,
            logger=self.log,
            title="/".join(self.exp.parts[-7:-3]) + "\n" + "/".join(self.exp.parts[-3:]),
            events=dict(self.events),
        )

    def _plot_held_back(self) -> None:
        """At a pause: draw the epochs the plot interval held back (rank 0), so loss.png is up to date."""
        if self.dist.is_main and self._plot_pending:
            self._plot(force=True)

    # -- checkpoints -----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """What ``last.pth`` holds (plain values and tensors; loads with ``weights_only=True``)."""
        return {
            "kind": TRAINING_KIND,
            "format_version": FORMAT_VERSION,
            **self.model.checkpoint(),  # model_name, model_args, state_dict: usable for inference too
            "train_config": self.cfg.to_dict(),
            "optimizer": self.optimizer.state_dict(),
            "plateau": self.plateau.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
            "progress": dataclasses.asdict(self.progress),
            "history": self.history,
            "events": self.events,
            "rng": rng_state(),
            "sampler": {
                "seed": self.cfg.seed,
                "epoch": self.progress.epoch,
                "step": self.progress.step,
                "world_size": self.dist.world_size,
            },
            "dnnsep_version": __version__,
        }

    def _save_last(self) -> None:
        self.progress.clock_seconds = self._now() - self._clock_origin
        if self.dist.is_main:
            save_checkpoint(self.state_dict(), self.last_path)

    def _save_best(self, valid_loss: float, valid_improvement: float) -> None:
        if self.dist.is_main:
            ckpt = {
                **self.model.checkpoint(),
                "kind": MODEL_KIND,
                "epoch": self.progress.epoch,
                "valid_loss": valid_loss,
                "valid_si_sdri": valid_improvement,
                "train_config": self.cfg.to_dict(),
                "dnnsep_version": __version__,
            }
            save_checkpoint(ckpt, self.best_path)


def train(
    cfg: TrainConfig,
    out_dir: str | os.PathLike,
    *,
    resume: str | os.PathLike | None = None,
    train_set: Dataset | None = None,
    valid_set: Dataset | None = None,
) -> dict[str, Any]:
    """Train (joining the torchrun process group if there is one) and return :meth:`Trainer.fit`'s summary."""
    dist, device = distributed.init(cfg.device)
    try:
        cfg = cfg.replace(dataset_dir=os.path.abspath(cfg.dataset_dir))
        out_dir = os.path.abspath(out_dir)  # logged paths work from any directory
        trainer = Trainer(
            cfg, out_dir, resume=resume, train_set=train_set, valid_set=valid_set, dist=dist, device=device
        )
        result = trainer.fit(max_seconds=None if cfg.max_minutes is None else 60 * cfg.max_minutes)
        distributed.barrier(dist)  # no process leaves the group while another (rank 0 writing) still uses it
        return result
    finally:
        distributed.shutdown()
