"""calltouch-metrika: Calltouch <-> Yandex Metrika for Airflow 3."""
