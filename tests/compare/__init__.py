"""Tests of fedmarket compare: sweeps, studies, study metrics."""
