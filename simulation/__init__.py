"""FedMarket's simulation: everything that wires the pure ``marketplace`` library and
the numpy-only ``agents`` to federated training, the simpy world, results and the CLI.

Subpackages, bottom to top: ``scenario`` (what a user writes), ``fl`` (data, models,
DP training, strategies), ``world`` (the round pipeline on a simpy clock), ``results``
(run files and their metrics), ``engine`` (Flower or in-process), ``study`` (sweeps),
``outputs`` (plots, reports, Hub), ``cli``. See ``docs/ARCHITECTURE.md``.
"""
