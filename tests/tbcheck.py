"""Read a run's TensorBoard event files back with TensorBoard's own reader and hold every scalar
against the run's CSVs and test.json (as float32, which is how event files store scalars)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np

from mnistlab.core.rundir import open_run
from mnistlab.training.tblog import EPOCH_TAGS, STEP_TAG, TEST_TAGS


def read_scalars(run_path: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar in a run's event files, per tag, as (step, value), read with TensorBoard's own
    reader (EventAccumulator, keeping every event)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_path), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def f32(x: float) -> float:
    return float(np.float32(x))


def expected_scalars(run_path: Path) -> dict[str, list[tuple[int, float]]]:
    """What a run's event files must hold, per tag: its CSVs' and test.json's values, as float32."""
    run = open_run(run_path)
    metrics, steps, test = run.metrics(), run.steps(), run.test()
    expected = {STEP_TAG: [(int(r["step"]), f32(r["train_loss"])) for r in steps]}
    for tag, column in EPOCH_TAGS.items():
        expected[tag] = [(int(r["global_step"]), f32(r[column])) for r in metrics]
    if test is not None and run.status().get("state") == "completed":
        for tag, key in TEST_TAGS.items():
            expected[tag] = [(int(metrics[-1]["global_step"]), f32(test[key]))]
    return {k: v for k, v in expected.items() if v}


def assert_events_match_run(run_path: Path) -> dict[str, list[tuple[int, float]]]:
    scalars = read_scalars(run_path)
    assert scalars == expected_scalars(run_path)  # every value, every step, once: nothing duplicated, nothing missing
    assert not [p for p in Path(run_path).iterdir() if p.is_dir()]  # no subfolder: one run in TensorBoard
    return scalars


def data_server_available() -> bool:
    try:
        import tensorboard_data_server
    except ImportError:
        return False
    return tensorboard_data_server.server_binary() is not None


def served_scalars(logdir: Path, runs: list[str], timeout: float = 90) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """Every scalar of `runs` (folders under logdir) as `tensorboard --logdir` shows them by default:
    with --load_fast (auto: wherever its Rust data server is installed, which `pip install tensorboard`
    brings), a reader of its own, apart from EventAccumulator. Asked over HTTP on the loopback address."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tempfile.TemporaryFile()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tensorboard.main",
            "--logdir",
            str(logdir),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--load_fast=true",
        ],
        stdout=log,
        stderr=log,
    )

    def get(route: str) -> object:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/data/plugin/scalars/{route}", timeout=10) as r:
            return json.load(r)

    try:
        deadline = time.monotonic() + timeout
        while True:  # until every run is loaded (the data server loads a run's files whole, then shows them)
            if server.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                raise AssertionError(f"tensorboard did not serve {runs}: {log.read()[-2000:]!r}")
            time.sleep(0.5)
            try:
                tags = get("tags")
            except OSError:  # not listening yet
                continue
            if all(tags.get(run) for run in runs):
                break
        quote = urllib.parse.quote
        return {
            run: {
                tag: [
                    (int(step), float(value))
                    for _, step, value in get(f"scalars?run={quote(run, safe='')}&tag={quote(tag, safe='')}")
                ]
                for tag in tags[run]
            }
            for run in runs
        }
    finally:
        server.terminate()
        server.wait(30)
        log.close()


def hparams_of(run_path: Path) -> tuple[dict[str, object], list[str]]:
    """The hyper-parameters and metric tags that the run's event files hold for TensorBoard's
    HParams dashboard (in the run's own folder, not in a subfolder)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import metadata

    acc = EventAccumulator(str(run_path))
    acc.Reload()
    content = acc.PluginTagToContent(metadata.PLUGIN_NAME)
    start = metadata.parse_session_start_info_plugin_data(content[metadata.SESSION_START_INFO_TAG])
    experiment = metadata.parse_experiment_plugin_data(content[metadata.EXPERIMENT_TAG])
    values = {k: getattr(v, v.WhichOneof("kind")) for k, v in start.hparams.items()}
    return values, [m.name.tag for m in experiment.metric_infos]
