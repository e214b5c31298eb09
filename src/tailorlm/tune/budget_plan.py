"""The arithmetic of ``--budget``: how long trials take, when the search must stop, which trial still fits.

Pure functions of measured times and a clock reading, so the scheduling can be tested with a fake clock
(tests/test_budget.py) and read without Optuna or torch in mind. ``tune/budget.py`` feeds them.

The rule. Everything, the search *and* the result (the winner's run with the baselines beside it), must end by
``end = start + budget``. A trial ``j`` that starts at ``s`` and finishes training at ``t`` completes at
``t + post`` (test evaluation, saving, report). What must still fit after it depends on how the winner becomes
the result:
- usually it is *adopted* (tune/adopt.py): the defaults trial measured the baselines on the same test rows, so
  the winner's run directory is copied with the baselines merged in, in ``ADOPT_S``: ``t + post + ADOPT_S <= end``;
- when no trial measured the baselines (the defaults trial failed), the winner is *retrained* with them. Then the
  final run of the best trial so far, ``reserve`` seconds (its own measured time, plus the baselines it skipped),
  must fit: ``t + post + reserve <= end``; and so must this trial's own retraining should it win, which takes as
  long as it did (plus the baselines): ``t + post + (t + post - s) + extra <= end``, i.e.
  ``t <= (end + s - extra) / 2 - post``.
The smaller bound is the trial's training deadline (``trial_deadline``). The defaults trial is the exception
(``defaults_deadline``): it measures the baselines, so if it wins its run is kept as the result, and it may train
until the budget's last tenth, stopping at its best checkpoint so far when time runs out.
Before a trial starts, the planner works out how many epochs fit before that deadline at the measured seconds per
epoch: all of the space (the sampler chooses freely), fewer (the next trial's epochs are fixed to the most that
fit, the sampler chooses the rest), or fewer than the space's lowest (the search stops). When fewer than twice the
space's lowest fit, no trial can follow this one: it is the *last*, and is not pruned, since the time pruning would
free could only be left unused. During the trial, a callback stops it at the deadline if the estimate was wrong: it
is then pruned at its last evaluation. Optuna's
own ``timeout`` could do neither: it is checked between trials only, so the trial that crosses it runs to its end.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

#: measured times are multiplied by this before planning: a shared machine is not equally fast all the time
SAFETY = 1.1
#: seconds for what follows the final run (metrics.json's search section, the report drawn again)
FINAL_SLACK_S = 3.0
#: the defaults trial trains until this share of the budget is left, for its own test evaluation, saving, report
DEFAULTS_TAIL_SHARE = 0.1
#: seconds to adopt a trial as the result: copy its run directory, merge the baselines, redraw report and card
ADOPT_S = 10.0


@dataclass(frozen=True)
class TrialTimes:
    """One complete trial's wall time, split as run.py's stage timings allow."""

    duration_s: float  # the whole trial, as Optuna measured it
    pre_s: float  # before training: prepare, tokenize (and adapt)
    baselines_s: float  # 0 for a trial that skipped the baselines
    train_s: float
    epochs_run: float  # may be fewer than asked for: early stopping

    @property
    def post_s(self) -> float:
        """Everything else: building the model, calibration, test evaluation, saving, the report."""
        return max(0.0, self.duration_s - self.pre_s - self.baselines_s - self.train_s)

    @property
    def epoch_s(self) -> float:
        return self.train_s / max(self.epochs_run, 1e-9)


@dataclass(frozen=True)
class Costs:
    """What the next trial and the final run are expected to cost, from the complete trials so far."""

    pre_s: float
    post_s: float
    epoch_s: float
    baselines_s: float  # measured by a trial that ran the baselines (the defaults trial); 0 if none did

    @classmethod
    def from_trials(cls, trials: list[TrialTimes]) -> Costs | None:
        """Medians (robust to one slow trial: the first of a process also pays for lazy imports), times
        ``SAFETY``; the baselines as the slowest trial that measured them."""
        if not trials:
            return None
        measured = [t.baselines_s for t in trials if t.baselines_s > 0]
        return cls(
            pre_s=SAFETY * statistics.median(t.pre_s for t in trials),
            post_s=SAFETY * statistics.median(t.post_s for t in trials),
            epoch_s=SAFETY * statistics.median(t.epoch_s for t in trials),
            baselines_s=SAFETY * max(measured, default=0.0),
        )

    def final_s(self, winner: TrialTimes) -> float:
        """The final run of ``winner``: the same training again (same seed, so the same early stop), plus the
        baselines if the trial skipped them, plus the report drawn again."""
        own = SAFETY * (winner.duration_s - winner.baselines_s)
        return own + self.baselines_s + FINAL_SLACK_S


def trial_deadline(end: float, start: float, reserve: float | None, post_s: float, extra_s: float,
                   retrained: bool = True) -> float:
    """The clock time by which trial training must end (module docstring): leave room for the result. A winner
    that is adopted (``retrained`` false) needs ``ADOPT_S``; one that is retrained needs the final run of the best
    trial so far (``reserve``) and this trial's own retraining should it win (``extra_s``: the baselines it
    skips)."""
    if not retrained:
        return end - post_s - max(reserve or 0.0, ADOPT_S)
    if_it_wins = (end + start - extra_s - FINAL_SLACK_S) / 2 - post_s
    if reserve is None:
        return if_it_wins
    return min(end - post_s - reserve, if_it_wins)


def defaults_deadline(end: float, start: float) -> float:
    """The defaults trial's training deadline. It runs the baselines, so when it wins its run directory is the
    result and nothing is retrained (tune/budget.py ``adopt_trial``): it may train until the budget's last tenth,
    which its test evaluation, saving and report use. A budget too short for a search is then the defaults run,
    within the budget, rather than a failed trial followed by the defaults trained past the budget."""
    return end - max(FINAL_SLACK_S, DEFAULTS_TAIL_SHARE * (end - start))


@dataclass(frozen=True)
class Plan:
    """What the next trial may be: ``free`` (any point of the space), ``epochs`` (fixed to fit) or ``stop``."""

    kind: str
    deadline: float = math.inf
    epochs: int | None = None
    reason: str = ""
    #: no further trial fits after this one (module docstring): it runs to its end rather than being pruned
    last: bool = False


def plan_next(now: float, end: float, costs: Costs | None, reserve: float | None, epochs: tuple[int, int],
              runs_baselines: bool = False, retrained: bool = True) -> Plan:
    """The next trial, starting at ``now``: how many epochs fit before its deadline at the measured speed.

    ``epochs``: the space's (low, high); ``runs_baselines``: the trial measures them itself (the defaults trial),
    so winning adds nothing for them; ``retrained``: a winner would be retrained rather than adopted. Without any
    complete trial there is nothing to plan from: only the defaults trial runs, under its deadline (the caller
    decides).
    """
    if costs is None:
        deadline = defaults_deadline(end, now) if runs_baselines else \
            trial_deadline(end, now, reserve, 0.0, 0.0, retrained)
        return Plan("free", deadline, reason="no trial measured yet")
    extra = 0.0 if runs_baselines else costs.baselines_s
    deadline = trial_deadline(end, now, reserve, costs.post_s, extra, retrained)
    before_training = costs.pre_s + (costs.baselines_s if runs_baselines else 0.0)
    room = deadline - now - before_training
    fit = math.floor(room / costs.epoch_s) if costs.epoch_s > 0 else epochs[1]
    low, high = epochs
    last = fit < 2 * low
    if fit >= high:
        return Plan("free", deadline, reason=f"{room:.0f} s left for training: every epoch count fits", last=last)
    if fit >= low:
        return Plan("epochs", deadline, fit, f"{room:.0f} s left for training: at most {fit} epochs fit", last)
    return Plan("stop", deadline, reason=(f"{max(room, 0):.0f} s left for training before the final run, less "
                                          f"than {low} epoch(s) at {costs.epoch_s:.1f} s each"))
