"""A local Airflow, run like production: ``make up`` / ``make down`` / ``make airflow``, and the
end-to-end tests' harness.

``python -m tools.local_airflow up`` starts, each in its own process group:

* a private PostgreSQL cluster (:mod:`.postgres`: Debian's ``postgresql`` binaries, ``initdb``/``pg_ctl``)
  as the metadata DB, falling back to SQLite when no PostgreSQL server is installed;
* the API emulator (``python -m sandbox``) on loopback;
* ``airflow api-server``, ``airflow scheduler``, ``airflow dag-processor`` and ``airflow triggerer``
  (LocalExecutor, SimpleAuthManager with one ``admin`` user) and one log server on loopback
  (:mod:`.log_server`), sharing one Fernet key, JWT secret and API secret key (:mod:`.stack`);
  the ``calltouch_default`` / ``metrika_default`` connections are created in the metadata DB, pointing
  at the sandbox (unless the user brings their own), and the ``calltouch_api`` pool.

Process supervision (start in a session of one's own, stop exactly that group) is :mod:`.processes`;
the command line (``up``, ``down``, ``status``, ``airflow ...``) is :mod:`.__main__`. Nothing is imported
here, so that ``[core] hostname_callable`` can name :func:`.log_server.loopback_hostname` cheaply.
"""
