"""Follow a lab's folder through the calls, and count each time a lower layer calls a higher one.

    python scripts/call_layers.py [--out DIR]

Runs `mnistlab lab --quick` on a tiny dataset it writes (seconds, not minutes) under `sys.setprofile`, and
records every call from one mnistlab module into another. A call goes "back up" when the caller's layer
is below the callee's (core 0 < data 1 < training 2 < measure 3 < report 4 < jobs 5 < cli and the
package 6). Two kinds, counted apart:
- by name: the lower module called a module-level function of the higher one, which it had to import
  (what `tests/test_spine.py` forbids statically);
- a callback: the higher layer handed the lower one a function or an object (a lambda, a closure, a bound
  method, a result with `to_dict`) and the lower one called it back, knowing nothing of where it came from.
Prints each caller -> callee pair of modules once, with how often it happened.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import tempfile
from pathlib import Path

LAYERS = {"core": 0, "data": 1, "training": 2, "measure": 3, "report": 4, "jobs": 5}


def module_of(filename: str, src: str) -> str | None:
    if not filename.startswith(src):
        return None
    parts = Path(filename[len(src) :].lstrip("/")).with_suffix("").parts
    return ".".join(("mnistlab", *parts)).removesuffix(".__init__")


def layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS.get(parts[1], 6) if len(parts) > 1 else 6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="the lab folder (default: a temporary one)")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import mnistlab
    from mnistlab.data import datasets
    from mnistlab.jobs.lab import run_lab
    from tests.conftest import write_tiny_dataset  # the suite's own tiny IDX files

    src = str(Path(mnistlab.__file__).parent)
    tmp = Path(tempfile.mkdtemp(prefix="mnistlab-layers-"))
    os.environ["MNISTLAB_DATA"] = str(tmp / "data")
    datasets.DATASETS["tiny"] = write_tiny_dataset(tmp / "data")
    up: collections.Counter[tuple[str, str, str]] = collections.Counter()
    seen: set[str] = set()

    def profile(frame, event, arg):  # noqa: ANN001, ANN202 - sys.setprofile's protocol
        if event != "call":
            return
        callee = module_of(frame.f_code.co_filename, src)
        caller = module_of(frame.f_back.f_code.co_filename, src) if frame.f_back else None
        if callee is None or caller is None or callee == caller:
            return
        seen.update((caller, callee))
        if layer(caller) < layer(callee):
            qualname = frame.f_code.co_qualname
            kind = "by name" if "." not in qualname and "<" not in qualname else "callback"
            up[caller, callee, kind] += 1

    sys.setprofile(profile)
    try:
        run_lab(
            quick=True,
            device="cpu",
            out=args.out or tmp / "lab",
            dataset="tiny",
            subset=512,
            log=lambda m: None,
            progress=False,
        )
    finally:
        sys.setprofile(None)
    for kind in ("by name", "callback"):
        pairs = sorted((k, n) for k, n in up.items() if k[2] == kind)
        print(f"a lower layer called a higher one {kind}: {len(pairs)} distinct caller -> callee module pair(s)")
        for (caller, callee, _), n in pairs:
            print(f"  {caller} (layer {layer(caller)}) -> {callee} (layer {layer(callee)}): {n} call(s)")
    print(f"the lab's path went through {len(seen)} mnistlab modules")


if __name__ == "__main__":
    main()
