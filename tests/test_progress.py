from explorer.app.progress import RateText


def test_rate_text_reports_count_rate_and_time_left():
    now = [100.0]
    text = RateText("images", clock=lambda: now[0])
    assert text(0, 500) == "0/500 images"  # nothing to measure a rate from yet
    now[0] += 10
    assert text(100, 500) == "100/500 images · 10.0/s · about 40 s left"
    now[0] += 10
    assert text(200, 500) == "200/500 images · 10.0/s · about 30 s left"
    slow = RateText("images", clock=lambda: now[0])
    slow(0, 100_000)
    now[0] += 100
    assert slow(1_000, 100_000).endswith("10.0/s · about 2.8 h left")


def test_a_patient_progress_shows_nothing_for_quick_work_and_everything_after():
    """ui/common.patient: a live edit answered within PROGRESS_AFTER_S draws no progress bar; longer work
    shows every report from then on."""
    from explorer.app.ui.common import PROGRESS_AFTER_S, patient

    now = [100.0]
    shown = []
    report = patient(lambda *a, **k: shown.append((a, k)), clock=lambda: now[0])
    report(0.5, desc="quick")
    now[0] += PROGRESS_AFTER_S * 0.9
    report(1.0, desc="still quick")
    assert shown == []
    now[0] += PROGRESS_AFTER_S
    report(0.25, desc="slow")
    assert shown == [((0.25,), {"desc": "slow"})]
    assert patient(None) is None
