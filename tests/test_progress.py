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
