"""The progress bar: quiet unless drawing to a terminal, and an ETA from the rate of this run."""

import io

from mpqopt.progress import Progress, format_seconds


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_draws_on_a_terminal_with_eta_and_ends_the_line():
    out = Terminal()
    with Progress(8, "work", stream=out, min_interval=0.0) as bar:
        bar.update(2)
        bar.update(6)
    text = out.getvalue()
    assert text.count("\r") == 3 and text.endswith("\n")  # two draws and the final line
    assert " 2/8  25%" in text and "ETA" in text and "8/8 100%" in text


def test_quiet_when_not_a_terminal_or_disabled():
    for stream, enabled in ((io.StringIO(), True), (Terminal(), False)):
        with Progress(5, "work", stream=stream, enabled=enabled, min_interval=0.0) as bar:
            bar.update(5)
        assert stream.getvalue() == "" and bar.done == 5


def test_eta_counts_only_the_work_of_this_run():
    bar = Progress(100, "resume", stream=io.StringIO(), initial=60)
    assert "ETA" not in bar.line(elapsed=5.0)  # nothing done yet in this run: no rate to go on
    bar.update(10)  # 10 units in 5 s: 30 left take 15 s (the 60 resumed units do not count)
    assert "70/100" in bar.line(elapsed=5.0) and "ETA 0:15" in bar.line(elapsed=5.0)
    assert format_seconds(59.6) == "1:00" and format_seconds(-1) == "0:00"
