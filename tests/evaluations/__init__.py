"""Tests of the evaluations package."""
