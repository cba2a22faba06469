"""The peer queue for `cargo xtask bench`: drains JOBS no-op jobs with pgqueuer.

Usage: pgqueuer_drain.py JOBS BATCH, connection from the libpq variables (PGHOST,
PGPORT, PGUSER, PGDATABASE); the schema must be installed (`pgqueuer install`).
Enqueues JOBS jobs in one statement, then runs pgqueuer's QueueManager in drain
mode with BATCH jobs per dequeue (its completions are buffered and batched by
default) and prints "<jobs> <seconds>" for the drain alone, like noop_drain.
"""

import asyncio
import sys
import time

import asyncpg
from pgqueuer import AsyncpgDriver, Queries, QueueManager
from pgqueuer.types import QueueExecutionMode


async def main(jobs: int, batch: int) -> None:
    connection = await asyncpg.connect()
    queries = Queries(AsyncpgDriver(connection))
    await queries.enqueue(["noop"] * jobs, [None] * jobs, [0] * jobs)
    manager = QueueManager(queries)
    done = 0

    @manager.entrypoint("noop")
    async def noop(job) -> None:
        nonlocal done
        done += 1

    started = time.perf_counter()
    await manager.run(batch_size=batch, mode=QueueExecutionMode.drain)
    seconds = time.perf_counter() - started
    await connection.close()
    print(f"{done} {seconds:.3f}")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
