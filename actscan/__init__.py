"""actscan: anomaly detection from neural-network activations.

Top-level packages: ``flows`` (Prefect composition), ``tasks`` (units of work and the numerical
core), ``storage`` (every byte on disk or in object storage). This package holds the CLI and the
process-level settings (Prefect's home, analytics, Dask cluster address).
"""

__version__ = "0.1.0"
