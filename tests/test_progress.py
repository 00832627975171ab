"""core/progress.py: the smoothed speed and ETA the CLI and the dashboard both show."""

from core.progress import StepRate, fmt_eta


def test_one_slow_step_barely_moves_the_rate():
    rate = StepRate()
    for _ in range(200):
        rate.add(239.0)
    rate.add(658.0)  # an evaluation or a busy moment
    assert abs(rate.ms_per_step - 239.0) < (658 - 239) / 40
    eta = rate.eta_s(5000)
    assert 1195 < eta < 1260  # ~20:00, not 54:50 from the last step alone


def test_the_first_steps_are_not_biased_toward_zero():
    rate = StepRate()
    assert rate.ms_per_step is None and rate.eta_s(10) is None
    rate.add(100.0)
    assert abs(rate.ms_per_step - 100.0) < 1e-9
    rate.add(float("nan"))
    assert abs(rate.ms_per_step - 100.0) < 1e-9


def test_fmt_eta():
    assert fmt_eta(61) == "01:01" and fmt_eta(3725) == "1:02:05" and fmt_eta(None) == "—"
