"""Reporting: the report (REPORT.md, report.html), claims by training length and across seeds."""
