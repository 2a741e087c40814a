"""Reports people read: one self-contained HTML file per plan or comparison.

:func:`loratwin.report.html.placement_report` (``loratwin report PLAN.json -o report.html``)
and :func:`loratwin.report.html.compare_report` (``loratwin compare --html``).
"""
