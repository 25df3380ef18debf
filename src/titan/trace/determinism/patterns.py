"""Which calls make a script non-deterministic, by fully qualified name.

Names are what :mod:`titan.trace.determinism.static` resolves a call to through the file's
imports: ``from datetime import datetime as dt; dt.now()`` is ``datetime.datetime.now``.
"""

from __future__ import annotations

import ast
from typing import NamedTuple


class Hit(NamedTuple):
    kind: str
    severity: str
    title: str | None = None  # None: the kind's usual title


WALL_CLOCK = {
    # ``datetime.now`` and friends unresolved: a snippet that uses the class without importing it.
    "datetime.datetime.now", "datetime.datetime.utcnow", "datetime.datetime.today",
    "datetime.date.today", "datetime.now", "datetime.utcnow", "datetime.today", "date.today",
    "pendulum.now", "arrow.now", "arrow.utcnow",
}
EPOCH_CLOCK = {"time.time", "time.time_ns"}
# These read the clock only when called without the time to format.
CLOCK_WITHOUT_ARGS = {"time.localtime", "time.gmtime", "time.ctime", "time.asctime"}
UUIDS = {"uuid.uuid1", "uuid.uuid4", "os.urandom"}

# Module-level functions of ``random`` that draw from the shared, seedable generator.
RANDOM_DRAWS = {
    "random", "randint", "choice", "choices", "shuffle", "sample", "uniform", "randrange",
    "getrandbits", "gauss", "normalvariate", "triangular", "betavariate", "expovariate",
    "lognormvariate", "vonmisesvariate", "paretovariate", "weibullvariate", "randbytes",
}
# ``numpy.random`` names that are not draws from the legacy global generator.
NUMPY_NOT_DRAWS = {"seed", "default_rng", "RandomState", "Generator", "SeedSequence",
                   "PCG64", "MT19937", "Philox", "SFC64", "BitGenerator", "get_state",
                   "set_state"}

NETWORK = {
    "urllib.request.urlopen", "http.client.HTTPConnection", "http.client.HTTPSConnection",
    "socket.socket", "socket.create_connection", "aiohttp.ClientSession", "aiohttp.request",
    "urllib3.PoolManager", "urllib3.request",
}
NETWORK_MODULES = {"requests", "httpx"}
NETWORK_VERBS = {"get", "post", "put", "patch", "delete", "head", "options", "request",
                 "stream", "Client", "AsyncClient", "Session"}

# Opening a database or a cache: what its queries read is state outside the run (seed 004's
# "External state"). The connection is what a static reading can name; its queries are
# methods of objects it cannot follow.
DATABASES = {
    "sqlite3.connect", "psycopg.connect", "psycopg.AsyncConnection.connect",
    "psycopg.Connection.connect", "psycopg2.connect", "psycopg_pool.ConnectionPool",
    "asyncpg.connect", "asyncpg.create_pool", "pymysql.connect", "MySQLdb.connect",
    "mysql.connector.connect", "sqlalchemy.create_engine",
    "sqlalchemy.ext.asyncio.create_async_engine", "redis.Redis", "redis.StrictRedis",
    "redis.from_url", "redis.asyncio.Redis", "redis.asyncio.from_url", "pymongo.MongoClient",
    "motor.motor_asyncio.AsyncIOMotorClient", "duckdb.connect", "peewee.SqliteDatabase",
    "peewee.PostgresqlDatabase", "peewee.MySQLDatabase",
}

FILES = {"builtins.open", "io.open", "os.listdir", "os.scandir", "os.walk", "glob.glob",
         "glob.iglob"}
# Methods distinctive enough of ``pathlib.Path`` to flag whatever the receiver is.
PATH_METHODS = {"read_text", "write_text", "read_bytes", "write_bytes"}

ENV = {"os.getenv", "os.environ.get", "os.environ.setdefault", "os.environ.copy"}
PIDS = {"os.getpid", "os.getppid"}

TOOL_DECORATORS = {"titan.tool", "titan.trace.tool", "titan.trace.actions.tool"}
ACTION_BLOCKS = {"titan.trace.action", "titan.trace.Action", "titan.trace.actions.action",
                 "titan.trace.actions.Action", "trace.action"}

# Consumers whose result does not depend on the order they are fed in: a set passed to them
# (or a generator over one) is fine.
ORDER_FREE = {"builtins.sorted", "builtins.set", "builtins.frozenset", "builtins.len",
              "builtins.sum", "builtins.min", "builtins.max", "builtins.any", "builtins.all",
              "collections.Counter"}
# Consumers that keep the order they are fed in.
ORDER_KEEPING = {"builtins.list", "builtins.tuple", "builtins.enumerate", "builtins.iter",
                 "builtins.zip", "builtins.next", "builtins.dict.fromkeys",
                 "builtins.reversed", "collections.OrderedDict.fromkeys"}
SET_BUILDERS = {"builtins.set", "builtins.frozenset"}
SET_METHODS = {"union", "intersection", "difference", "symmetric_difference", "copy"}
SET_ANNOTATIONS = {"set", "frozenset", "Set", "FrozenSet", "AbstractSet", "MutableSet"}


def classify(name: str, call: ast.Call, *, random_seeded: bool,
             numpy_seeded: bool) -> Hit | None:
    """What calling ``name`` (fully qualified) does to determinism, or None when harmless."""
    if name in WALL_CLOCK:
        return Hit("wall_clock", "high")
    if name in EPOCH_CLOCK:
        return Hit("wall_clock", "medium")
    if name in CLOCK_WITHOUT_ARGS and not call.args:
        return Hit("wall_clock", "medium")
    if name == "time.strftime" and len(call.args) == 1:
        return Hit("wall_clock", "medium")
    if name in UUIDS:
        return Hit("uuid", "high", None if name.startswith("uuid.") else "Random bytes")
    if name.startswith("secrets."):
        return Hit("uuid", "high", "Random token")
    head, _, last = name.rpartition(".")
    if head == "random":
        if last in RANDOM_DRAWS and not random_seeded:
            return Hit("unseeded_random", "high")
        if last == "Random" and not call.args and not call.keywords:
            return Hit("unseeded_random", "high", "Unseeded random.Random()")
        if last == "SystemRandom":
            return Hit("unseeded_random", "high", "random.SystemRandom cannot be seeded")
        return None
    if head == "numpy.random":
        if last in ("default_rng", "RandomState") and not call.args and not call.keywords:
            return Hit("numpy_random", "high", f"Unseeded np.random.{last}()")
        if last not in NUMPY_NOT_DRAWS and not numpy_seeded:
            return Hit("numpy_random", "high")
        return None
    if name in PIDS:
        return Hit("pid", "medium")
    if name in ENV:
        return Hit("env_read", "low")
    if name == "builtins.hash":
        if len(call.args) == 1 and _is_int_constant(call.args[0]):
            return None  # hash() of an int is the int: not salted
        return Hit("str_hash", "medium")
    if name in NETWORK or (head in NETWORK_MODULES and last in NETWORK_VERBS):
        return Hit("network_io", "critical")
    if name in DATABASES:
        return Hit("database_io", "high")
    if name in FILES or last in PATH_METHODS:
        return Hit("file_io", "low")
    return None


def _is_int_constant(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and type(node.value) in (int, bool)
