"""A process's start, read from the kernel where it can be, else mnistlab's import time (the speedrun's cold time)."""

from __future__ import annotations

import os
import sys
import time

import pytest

import mnistlab
from mnistlab.core import processstart
from mnistlab.core.processstart import FROM_IMPORT, FROM_PROCESS, process_start


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/stat is Linux's")
def test_on_linux_the_start_comes_from_the_kernel_and_precedes_the_import():
    start, source = process_start()
    assert source == FROM_PROCESS
    tick = 1 / os.sysconf("SC_CLK_TCK")
    assert start <= mnistlab._IMPORTED_AT + tick  # this process began before it imported mnistlab
    assert start <= time.time()


@pytest.mark.skipif(not hasattr(time, "CLOCK_BOOTTIME"), reason="no CLOCK_BOOTTIME here")
def test_field_22_is_found_after_a_name_with_spaces_and_parentheses(tmp_path, monkeypatch):
    ticks = os.sysconf("SC_CLK_TCK")
    started = int((time.clock_gettime(time.CLOCK_BOOTTIME) - 100) * ticks)  # 100 s ago, in clock ticks after boot
    fields = ["S", *map(str, range(4, 22)), str(started), "999", "888"]  # fields 3 .. 24
    stat = tmp_path / "stat"
    stat.write_text(f"4242 (a (b) c) {' '.join(fields)}\n")
    monkeypatch.setattr(processstart, "PROC_STAT", stat)
    start, source = process_start()
    assert source == FROM_PROCESS and start == pytest.approx(time.time() - 100, abs=2 / ticks + 0.05)


@pytest.mark.parametrize("content", [None, "garbage", "1 (x) S 2"])
def test_without_a_readable_stat_it_falls_back_to_the_import_time(tmp_path, monkeypatch, content):
    stat = tmp_path / "stat"
    if content is not None:
        stat.write_text(content)
    monkeypatch.setattr(processstart, "PROC_STAT", stat)
    assert process_start() == (mnistlab._IMPORTED_AT, FROM_IMPORT)
