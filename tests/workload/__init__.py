"""Tests of loratwin.workload."""
