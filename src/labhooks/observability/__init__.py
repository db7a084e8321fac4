"""What an operator sees of a running labhooks: Prometheus metrics (metrics.py), what the
database says about the queue and the workers (readings.py), worker heartbeats
(heartbeats.py), structured logs (logs.py) and `labhooks status` (status.py)."""
