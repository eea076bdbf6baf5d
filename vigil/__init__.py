"""Vigil: observability and SLO service on ClickHouse."""
