"""When this process started, for a cold time measured from it (the speedrun's `cold_s`).

On Linux the kernel says: field 22 of /proc/self/stat is the start in clock ticks after boot. It is
put on the wall clock with CLOCK_BOOTTIME read now (the clock that field counts on), not with
/proc/stat's btime, which is whole seconds: a cold time of a few seconds would carry up to a second
of error. Elsewhere (or if /proc cannot be read) the fallback is the moment `mnistlab` was first
imported, which leaves out the interpreter's start and whatever ran before that import; the second
value says which of the two it is.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

PROC_STAT = Path("/proc/self/stat")
FROM_PROCESS, FROM_IMPORT = "process start", "mnistlab import"


def process_start() -> tuple[float, str]:
    """(seconds since the epoch on time.time()'s clock, FROM_PROCESS or FROM_IMPORT)."""
    try:
        return _kernel_start(), FROM_PROCESS
    except (OSError, ValueError, IndexError, AttributeError):  # not Linux, no /proc, no CLOCK_BOOTTIME
        import mnistlab

        return mnistlab._IMPORTED_AT, FROM_IMPORT


def _kernel_start() -> float:
    # the name in field 2 is in parentheses and may itself hold spaces or ')': split after the last one
    fields = PROC_STAT.read_text().rsplit(")", 1)[1].split()
    since_boot = int(fields[22 - 3]) / os.sysconf("SC_CLK_TCK")  # fields[0] is field 3
    return time.time() - (time.clock_gettime(time.CLOCK_BOOTTIME) - since_boot)
