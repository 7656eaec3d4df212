"""Durable orchestrations (import and export workflows) and their activities."""

import azure.durable_functions as df

bp = df.Blueprint()

__all__ = ["bp"]
