"""Developer tools: ``make demo`` (demo.py) and ``make up`` (local_airflow/)."""
