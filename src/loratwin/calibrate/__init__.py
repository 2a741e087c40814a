"""Profiles made from data: fitting calibration sweeps through the twin (:mod:`.fit`).

This layer sits above the twin (fitting replays measured runs in it), while
:mod:`loratwin.profile` is plain data that simulates nothing.
"""
