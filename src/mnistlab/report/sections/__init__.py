"""The report's sections, in the order they appear: one module each, each reading the typed `Inputs`."""

from __future__ import annotations

from mnistlab.report.sections import (bench, environment, levers, models, observations, other_runs, q1_data, q2_loss,
                                      q3_epoch_time, q4_train_longer, q5_gpu, q6_mlp_gpu, q7_cnn_cpu, q8_cnn_gpu,
                                      q9_cnn_devices, q10_flops, runs_at_a_glance, scaling, speedrun, sweep)
from mnistlab.report.sections.section import Section

SECTIONS: list[Section] = [m.SECTION for m in (
    environment, q1_data, models, runs_at_a_glance, q2_loss, q3_epoch_time, q4_train_longer, q5_gpu, q6_mlp_gpu,
    q7_cnn_cpu, q8_cnn_gpu, q9_cnn_devices, other_runs, q10_flops, bench, scaling, levers, speedrun, observations)]
SWEEP_SECTIONS: list[Section] = [sweep.SECTION]  # a sweep folder's own report
QUESTIONS: list[Section] = [s for s in SECTIONS if s.question]
