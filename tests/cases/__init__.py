"""Tests of the cases package."""
