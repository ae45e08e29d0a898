"""Anomaly detectors: one contract (``detectors.base``), one registry (``detectors.registry``),
the NAB harness (``detectors.nab``) with its exact scorer (``detectors.scoring``) and the
``pulse detectors`` CLI (``detectors.cli``)."""
