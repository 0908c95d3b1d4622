"""Read a run's TensorBoard event files back with TensorBoard's own reader and hold every scalar
against the run's CSVs and test.json (as float32, which is how event files store scalars)."""

from __future__ import annotations

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


def assert_events_match_run(run_path: Path) -> dict[str, list[tuple[int, float]]]:
    run = open_run(run_path)
    scalars = read_scalars(run_path)
    metrics, steps, test = run.metrics(), run.steps(), run.test()
    expected = {STEP_TAG: [(int(r["step"]), f32(r["train_loss"])) for r in steps]}
    for tag, column in EPOCH_TAGS.items():
        expected[tag] = [(int(r["global_step"]), f32(r[column])) for r in metrics]
    if test is not None and run.status().get("state") == "completed":
        for tag, key in TEST_TAGS.items():
            expected[tag] = [(int(metrics[-1]["global_step"]), f32(test[key]))]
    expected = {k: v for k, v in expected.items() if v}
    assert scalars == expected  # every value, every step, once: nothing duplicated, nothing missing
    assert not [p for p in Path(run_path).iterdir() if p.is_dir()]  # no subfolder: one run in TensorBoard
    return scalars


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
