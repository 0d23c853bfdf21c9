"""Prefect flows: composition only. Each stage is a subflow calling one task of ``tasks.units``."""
