"""Optimizer steps that survive long runs: non-finite steps skipped, gradient norms logged, no
host syncs per step.

``StepGuard.step(loss)`` finishes one optimizer step after the backward passes (and the
gradient all-reduce): it takes the global gradient norm, clips, and has the fused AdamW skip the
update on the device when the loss or the norm is not finite (``found_inf``, the mechanism
torch's GradScaler uses: parameters, moments and the step count stay as they were). The counts
it keeps (consecutive skipped steps, sums for the metrics) stay on the device; the host reads
the consecutive count one step late (``_LaggedValue``: a non-blocking copy, waited for only
after the next step is queued), logs each skipped step, and raises ``NonFiniteError`` once
``max_consecutive`` steps in a row were skipped. ``interval()`` reads the sums once per metrics
row.
"""
from __future__ import annotations

import sys

import torch


class NonFiniteError(RuntimeError):
    """Too many optimizer steps in a row had a non-finite loss or gradient norm."""


def make_adamw(groups, *, lr: float, weight_decay: float, betas=(0.9, 0.999), eps: float = 1e-8):
    """AdamW with the fused kernel (CPU and CUDA), which can skip a step on the device.

    groups: parameters or param-group dicts, as ``torch.optim.AdamW`` takes them.
    """
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                             fused=True)


class _LaggedValue:
    """A device scalar read on the host one step after it was written, without stalling."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.host = torch.zeros((), dtype=torch.int64, pin_memory=self.cuda)
        self.event = None
        self.tag = None

    def push(self, value: torch.Tensor, tag) -> None:
        self.host.copy_(value, non_blocking=self.cuda)
        if self.cuda:
            self.event = torch.cuda.Event()
            self.event.record()
        self.tag = tag

    def read(self):
        """(value, tag) of the last push, or (0, None) before the first."""
        if self.tag is None:
            return 0, None
        if self.event is not None:
            self.event.synchronize()
        return int(self.host), self.tag


class StepGuard:
    """Skip-on-non-finite optimizer steps with on-device bookkeeping (module docstring).

    optimizer: a fused AdamW (``make_adamw``); params: the trainable parameters; grad_clip: max
    global norm, or None/0 for none; max_consecutive: skipped steps in a row that stop the run;
    name: the command named in log lines.
    """

    def __init__(self, optimizer, params, *, grad_clip: float | None, max_consecutive: int,
                 device: torch.device, name: str = "rnaret"):
        self.optimizer = optimizer
        self.params = [p for p in params if p.requires_grad]
        self.grad_clip = float(grad_clip) if grad_clip else None
        self.max_consecutive = int(max_consecutive)
        self.device = torch.device(device)
        self.name = name
        zero = lambda dtype: torch.zeros((), dtype=dtype, device=self.device)  # noqa: E731
        self.consecutive = zero(torch.int64)
        self.loss_sum, self.weight = zero(torch.float64), zero(torch.float64)
        self.norm_sum, self.finite_steps, self.skipped = zero(torch.float64), zero(torch.int64), zero(torch.int64)
        self._lag = _LaggedValue(self.device)
        self._seen = 0  # consecutive count the host has logged

    def step(self, loss: torch.Tensor, weight, step: int) -> None:
        """Clip, step (or skip) and zero the gradients. loss: the step's 0-d loss (what the
        metrics average; any dtype), weight: its weight in that average (e.g. masked tokens),
        step: the 1-based number of this optimizer step (named in the log)."""
        grads = [p.grad for p in self.params if p.grad is not None]
        norm = (torch.nn.utils.get_total_norm(grads) if grads
                else torch.zeros((), device=self.device)).float()
        loss = loss.detach().double()
        finite = torch.isfinite(norm) & torch.isfinite(loss)
        if self.grad_clip is not None and grads:
            torch.nn.utils.clip_grads_with_norm_(self.params, self.grad_clip, norm)
        self.optimizer.found_inf = (~finite).float()  # read by the fused AdamW: skip when 1
        self.optimizer.grad_scale = None
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        # bookkeeping on the device: nothing here waits for the step to finish
        zero = torch.zeros((), dtype=torch.float64, device=self.device)
        self.consecutive = torch.where(finite, 0, self.consecutive + 1)
        self.loss_sum += torch.where(finite, loss, zero)
        self.weight += finite.double() * float(weight)
        self.norm_sum += torch.where(finite, norm.double(), zero)
        self.finite_steps += finite.long()
        self.skipped += (~finite).long()
        previous, previous_step = self._lag.read()  # the count after the step before this one
        self._lag.push(self.consecutive, step)
        self._check(previous, previous_step)

    def _check(self, consecutive: int, step) -> None:
        if consecutive > self._seen:
            print(f"{self.name}: step {step} skipped: the loss or the gradient norm is not finite "
                  f"({consecutive} in a row)", file=sys.stderr, flush=True)
        self._seen = consecutive
        if consecutive >= self.max_consecutive:
            raise NonFiniteError(
                f"{self.name}: stopped after {consecutive} optimizer steps in a row (up to step {step}) "
                f"with a non-finite loss or gradient norm (max_nonfinite_steps={self.max_consecutive}); "
                "lower the learning rate, set grad_clip, or use precision fp32")

    def finish(self) -> None:
        """Check the last step (reads the device value now); call after the last ``step``."""
        consecutive, step = int(self.consecutive), self._lag.tag
        self._check(consecutive, step)

    def interval(self) -> dict:
        """{"loss": weighted mean loss of the finite steps, "grad_norm": their mean gradient norm
        (before clipping), "skipped": skipped steps} since the last call, then reset the sums.
        Reads the device (one sync); values are None when no step of the interval was finite."""
        loss_sum, weight, norm_sum, finite, skipped = (float(self.loss_sum), float(self.weight),
                                                       float(self.norm_sum), int(self.finite_steps),
                                                       int(self.skipped))
        for t in (self.loss_sum, self.weight, self.norm_sum, self.finite_steps, self.skipped):
            t.zero_()
        return {"loss": loss_sum / weight if weight else None,
                "grad_norm": norm_sum / finite if finite else None, "skipped": skipped}

    def state_dict(self) -> dict:
        """The bookkeeping as CPU tensors and ints (saved with a checkpoint)."""
        return {"consecutive": self.consecutive.cpu(), "loss_sum": self.loss_sum.cpu(),
                "weight": self.weight.cpu(), "norm_sum": self.norm_sum.cpu(),
                "finite_steps": self.finite_steps.cpu(), "skipped": self.skipped.cpu(),
                "seen": self._seen}

    def load_state_dict(self, state: dict) -> None:
        """Restore ``state_dict()``'s values."""
        for key in ("consecutive", "loss_sum", "weight", "norm_sum", "finite_steps", "skipped"):
            setattr(self, key, state[key].to(self.device))
        self._seen = int(state["seen"])
