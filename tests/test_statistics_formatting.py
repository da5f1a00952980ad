"""The one text format of shares, points and intervals (jaxdiff.statistics.formatting)."""

from jaxdiff.statistics import formatting


def test_shares_points_and_intervals_read_as_the_reports_print_them():
    assert formatting.percent(0.4842) == "48.4%" and formatting.percent(None) == "-"
    assert formatting.points(-0.0063) == "-0.6" and formatting.points(0.02) == "+2.0" and formatting.points(None) == "-"
    assert formatting.points(-0.0004) == formatting.points(0.0) == "+0.0"  # never "-0.0"
    assert formatting.interval_text([-0.0218, 0.0092]) == "[-2.2, +0.9]"
    assert formatting.interval_text([0.4354, 0.5329], fmt="{:.1f}") == "[43.5, 53.3]"
    assert formatting.interval_text((0.12, 0.345), 1, "{:+.2f}") == "[+0.12, +0.34]"
    assert formatting.interval_text([None, None]) == "n/a" and formatting.interval_text(None, missing="-") == "-"
    assert formatting.share_with_interval(0.4842, [0.4354, 0.5329]) == "48.4% [43.5, 53.3]"
    assert formatting.tau_text(0.01234) == "0.012" and formatting.tau_text(0.01234, 100, "{:.1f}") == "1.2"
    assert formatting.tau_text(None) == "-"
