"""The job queue: claim with a lease, heartbeat, complete, fail, release, reap -- all fenced.

Every operation is one short transaction, committed at once; no transaction is ever held while a
job trains. The lease token written by ``claim`` is the fence: ``heartbeat``, ``complete``,
``fail``, ``release``, ``record_metrics`` and ``set_checkpoint`` change nothing and return False
once the lease is gone (reaped, cancelled, or claimed anew by someone else). The lease carries
its expiry (``lease_expires_at``), written from the owner's TTL at claim and at every heartbeat;
the reaper expires a lease by it alone. The SQL lives in :mod:`db.statements.queue`; what differs
between PostgreSQL and SQLite, in :mod:`db.dialect`.

The operations are grouped by concern in three modules, assembled here as :class:`JobQueue`:
:mod:`db.queue_claims` (claim, claim_groups), :mod:`db.queue_leases` (the lease holder's writes),
:mod:`db.queue_admin` (reap, retry, cancel, counts, job, history), :mod:`db.queue_fleet` (driver
liveness, node health, where a job failed), :mod:`db.promotions` (adaptive campaigns' promotion
decisions); :mod:`db.queue_core` runs the SQL.
"""

from __future__ import annotations

from db.promotions import Promotions
from db.queue_admin import Maintenance
from db.queue_claims import ClaimedJob, Claims
from db.queue_core import DEFAULT_LEASE_TTL_S, DEFAULT_LEGACY_TTL_S, backoff_delay
from db.queue_fleet import FleetRecords
from db.queue_leases import LeaseWrites

__all__ = ["ClaimedJob", "DEFAULT_LEASE_TTL_S", "DEFAULT_LEGACY_TTL_S", "JobQueue", "backoff_delay"]


class JobQueue(Claims, LeaseWrites, Maintenance, FleetRecords, Promotions):
    """Queue operations on an engine (PostgreSQL or SQLite, identical behaviour).

    ``backoff_base`` / ``backoff_cap`` (seconds) shape the delay before a failed or reaped job may
    be claimed again (see :func:`backoff_delay`); 0 disables it.

    Durability on PostgreSQL: only ``complete`` waits for its commit to reach the disk (unless
    ``durable_complete=False``). Every other operation commits asynchronously
    (``synchronous_commit = off`` for that transaction): a server crash can forget its last
    fraction of a second, which the queue already survives -- a forgotten claim leaves the job
    pending (the worker's next heartbeat returns False), a forgotten heartbeat / fail / release
    leaves a lease the reaper expires. It never leaves the database inconsistent (each
    transaction is kept or lost whole), and it saves a disk flush per claim and heartbeat.
    SQLite (WAL, synchronous=NORMAL) behaves alike: safe against process crashes, not power loss.
    """
