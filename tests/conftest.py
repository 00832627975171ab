"""Test-wide setup: one BLAS thread (as the CLI uses), set before numpy is first imported.

Idle BLAS threads spin, which also makes Textual's Pilot think the app is busy after every key press.
"""

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def saves(tmp_path, monkeypatch):
    """Every test saves under its own temporary folder, never the repository's saves/."""
    d = tmp_path / "saves"
    monkeypatch.setenv("ATTNLAB_SAVES", str(d))
    return d


@pytest.fixture
def short_answers(monkeypatch):
    """Evaluated answers end at 12 characters, not 80. An untrained model never writes the newline that
    ends an answer, so each of a full evaluation's thousands of answers runs to the cap: tests of what
    the commands do with a tiny save's figures need not pay for 80 characters of noise each."""
    from core.tasks.lm import LMTask
    monkeypatch.setattr(LMTask, "ANSWER_CHARS", 12)
