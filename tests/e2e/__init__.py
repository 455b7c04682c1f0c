"""End-to-end tests: real Airflow processes on PostgreSQL, and a real browser."""
