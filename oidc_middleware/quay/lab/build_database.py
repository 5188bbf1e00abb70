"""Build Quay's SQLite fixture database with Quay's own initdb (run with Quay's Python, TEST set).

    python build_database.py OUT.sqlite      (cwd: Quay's tree, PYTHONPATH: Quay's tree)

The same steps as Quay's own test fixtures (test/fixtures.py, _init_db_path_sqlite).
"""

from __future__ import annotations

import os
import sys

out = sys.argv[1]
uri = f"sqlite:///{out}"
os.environ["DB_URI"] = uri

from app import app as application  # noqa: E402  (Quay reads its configuration at import)
from data.database import close_db_filter, db  # noqa: E402
from initdb import initialize_database, populate_database  # noqa: E402
from peewee import SqliteDatabase  # noqa: E402

application.config.update(
    {
        "TESTING": True,
        "DEBUG": True,
        "SECRET_KEY": "superdupersecret!!!1",
        "DATABASE_SECRET_KEY": "anothercrazykey!",
        "DB_URI": uri,
    }
)
db.initialize(SqliteDatabase(out))
initialize_database()
db.obj.execute_sql("PRAGMA foreign_keys = ON;")
db.obj.execute_sql('PRAGMA encoding="UTF-8";')
populate_database()

# One OAuth access token of Quay's own (opaque), for devtable (admin of the organization buynlarge),
# valid for ten years: the fixture's own token expires 2.5 hours after the database is built, and
# this one is cached. Its scopes let tests read the user and make robots, repositories and
# permissions through Quay's REST API, as an administrator does.
from data import model  # noqa: E402

model.oauth.create_user_access_token(
    model.user.get_user("devtable"),
    "deadbeef",
    "repo:admin repo:create repo:write repo:read org:admin user:read",
    access_token="d" * 40 + "e" * 40,
    expires_in=10 * 365 * 86400,
)
close_db_filter(None)
