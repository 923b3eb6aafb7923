"""Tests of the methods package."""
