"""jobcare.stages: named stages timed, aggregated per name, with the peak memory sampled while they ran."""

from __future__ import annotations

import time

import numpy as np
import psutil

from jobcare.stages import StageRecorder, stage


def test_stages_are_summed_per_name_nested_and_only_while_a_recorder_is_active():
    with stage("before"):  # no recorder: logged only
        pass
    with StageRecorder(interval=0.01) as rec:
        for _ in range(3):
            with stage("fit"):
                time.sleep(0.02)
        with stage("outer"):
            with stage("outer/inner"):
                time.sleep(0.05)
            time.sleep(0.02)
    with stage("after"):
        pass
    assert list(rec.stages) == ["fit", "outer", "outer/inner"]  # in the order first entered
    assert rec.stages["fit"]["calls"] == 3 and 0.06 <= rec.stages["fit"]["seconds"] < 0.5
    inner, outer = rec.stages["outer/inner"]["seconds"], rec.stages["outer"]["seconds"]
    assert 0.05 <= inner and inner + 0.02 <= outer < inner + 0.5


def test_the_peak_of_a_stage_sees_memory_that_is_freed_before_it_ends():
    with StageRecorder(interval=0.005) as rec:
        with stage("small"):
            time.sleep(0.03)
        with stage("big"):
            block = np.ones(400 * 2**20 // 8)  # 400 MiB, touched
            time.sleep(0.1)
            del block
        with stage("small_again"):
            time.sleep(0.03)
    small, big = rec.stages["small"]["peak_rss_mib"], rec.stages["big"]["peak_rss_mib"]
    assert big - small > 350
    assert rec.stages["small_again"]["peak_rss_mib"] < big - 350
    assert rec.peak_rss_mib == max(s["peak_rss_mib"] for s in rec.stages.values())


def test_the_memory_of_child_processes_counts():
    import subprocess
    import sys

    code = "import numpy, time; a = numpy.ones(300 * 2**20 // 8); time.sleep(1.5)"
    with StageRecorder(interval=0.05) as rec:
        with stage("alone"):
            time.sleep(0.2)
        with stage("with_child"):
            subprocess.run([sys.executable, "-c", code], check=True)
    assert rec.stages["with_child"]["peak_rss_mib"] - rec.stages["alone"]["peak_rss_mib"] > 250


def test_a_forked_child_counts_its_own_pages_not_the_parents_it_shares():
    """A forked replay worker maps every page of its parent: summing resident sets would count the parent's
    600 MiB twice. The child's own 200 MiB count; the shared 600 MiB once."""
    import os

    from jobcare.stages import tree_rss

    parent = np.ones(600 * 2**20 // 8)  # touched, resident in the parent
    ready_r, ready_w = os.pipe()
    done_r, done_w = os.pipe()
    with StageRecorder(interval=0.02) as rec:
        with stage("alone"):
            time.sleep(0.3)
        with stage("with_child"):
            before = tree_rss(psutil.Process()) / 2**20  # other children of this process (a test server) too
            pid = os.fork()
            if pid == 0:  # the child reads all of the parent's block and writes 200 MiB of its own
                own = np.full(200 * 2**20 // 8, float(parent.sum() > 0))
                os.write(ready_w, b"1")
                os.read(done_r, 1)  # held until the parent has measured
                os._exit(0 if own[0] == 1.0 else 1)
            os.read(ready_r, 1)
            time.sleep(0.6)  # the sampler lists and measures children every 10 samples (0.2 s here)
            during = tree_rss(psutil.Process()) / 2**20
            os.write(done_w, b"1")
            assert os.waitpid(pid, 0)[1] == 0
    grew = rec.stages["with_child"]["peak_rss_mib"] - rec.stages["alone"]["peak_rss_mib"]
    assert 150 < grew < 400, grew  # the child's 200 MiB (and its interpreter's copied pages), not +600
    assert 150 < during - before < 400, during - before
    del parent
