"""Named points where the fault-injection tests make the process die, at exactly that moment.

`MNISTLAB_KILL_AT=POINT[:N]` sends SIGKILL to this process the N-th time (default: the first)
it reaches POINT; `MNISTLAB_KILL_SIGNAL=TERM` (or INT) sends that signal instead, which the
process may handle. The points: `write:<file name>` (half of the file's temporary copy written),
`epoch-end` (an epoch trained, nothing of it saved yet), `step-checkpoint` (a mid-epoch last.pt written,
--checkpoint-every), `after-checkpoint` (the CSVs and
last.pt of an epoch written, its progress line not yet printed), `final-eval` (the test evaluation under way),
`tensorboard-rewrite` (on resume, the rewritten event file moved in, the stale ones not yet deleted), `evaluate` (an
evaluation starts: validation, the test, eval), `fetch` (a dataset's files are about to be checked), `speedrun-floor`
(a speedrun's FLOP count and ceiling probe, after seed 0), `job-end` (a job's final state about to be written) and
`command-done` (the command's work done, its answer not yet flushed). Unset, a point
costs one dictionary lookup, and none is on the per-step path. Under torchrun a point fires in the first
attempt only: the group that --max-restarts starts again runs on.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

ENV_VAR = "MNISTLAB_KILL_AT"
SIGNAL_VAR = "MNISTLAB_KILL_SIGNAL"
_seen: Counter[str] = Counter()


def kill_point(name: str) -> None:
    spec = os.environ.get(ENV_VAR)
    if not spec or os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") not in ("", "0"):
        return  # a group that torchrun restarted runs on: the fault was the first attempt's
    point, _, nth = spec.rpartition(":")
    if not nth.isdigit():
        point, nth = spec, "1"
    if point != name:
        return
    _seen[name] += 1
    if _seen[name] == int(nth):
        sig = getattr(signal, "SIG" + os.environ.get(SIGNAL_VAR, "KILL").upper().removeprefix("SIG"))
        os.kill(os.getpid(), sig)
