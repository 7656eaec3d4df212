"""Queue and timer workers: the back end that does the slow work the front end queued."""

from queue_workers import jobs, profile, sweeper  # noqa: F401  (importing registers the triggers)
from queue_workers.blueprint import bp

__all__ = ["bp"]
