"""Names of the data sets actscan ingests (no imports: the CLI reads them at start-up)."""

DATASETS: tuple[str, ...] = (
    "mnist", "fashion-mnist", "emnist-letters", "nsl-kdd", "cicids2018", "creditcard",
)  # fmt: skip
