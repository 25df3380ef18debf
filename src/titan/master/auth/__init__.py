"""Who is asking, and what they may do.

* :mod:`.tokens` — stored tokens and roles, job tokens (an HMAC per attempt), worker
  credentials (an HMAC per worker), the lookup cache
* :mod:`.audit` — the security log: tokens made and revoked, and by whom; refused requests
* :mod:`.sessions` — dashboard sessions: the signed cookie, the write key (CSRF), sign-out,
  same-origin sockets
"""
