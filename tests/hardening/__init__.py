"""Regression tests for the hardening review (issue 9): each item as test_hNN_*; each failed
on the code before its fix."""
