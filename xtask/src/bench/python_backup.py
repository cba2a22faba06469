"""A backup job written the way a hand-written Python script does it, for
`cargo xtask bench`: the yardstick the platform-shaped backup case is measured
against (the service replaced such a script).

Usage: python_backup.py OUT_DIR, with DATABASE_URL, KC_DB_URL,
SUPABASE_STORAGE_ROOT and PG_DUMP in the environment. Dumps each database with
pg_dump as plain SQL into gzip.open (Python's default level, 9), archives the
storage directory with tarfile ("w:gz", also level 9), then writes a manifest
with each file's size and sha256 -- one step after another, as such scripts do.
"""

import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile


def dump(pg_dump: str, dsn: str, path: str) -> None:
    with gzip.open(path, "wb") as out:
        child = subprocess.Popen(
            [pg_dump, "--format=plain", "--no-owner", "-d", dsn], stdout=subprocess.PIPE
        )
        shutil.copyfileobj(child.stdout, out, 1 << 20)
        if child.wait() != 0:
            sys.exit(f"pg_dump failed for {path}")


def sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def main(out: str) -> None:
    os.makedirs(out)
    pg_dump = os.environ["PG_DUMP"]
    files = []
    for name, variable in [("supabase_db.sql.gz", "DATABASE_URL"), ("keycloak_db.sql.gz", "KC_DB_URL")]:
        path = os.path.join(out, name)
        dump(pg_dump, os.environ[variable], path)
        files.append(path)
    archive = os.path.join(out, "storage_buckets.tar.gz")
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(os.environ["SUPABASE_STORAGE_ROOT"], arcname="storage")
    files.append(archive)
    manifest = [
        {"file": os.path.basename(path), "bytes": os.path.getsize(path), "sha256": sha256(path)}
        for path in files
    ]
    with open(os.path.join(out, "manifest.json"), "w") as file:
        json.dump(manifest, file, indent=2)


if __name__ == "__main__":
    main(sys.argv[1])
