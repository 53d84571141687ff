"""Monitoring and alerts (reference §B.5, gotcha 4): the metric table, the Megatron-log -> Pushgateway publisher,
MFU, alert/recording rules and their promtool tests, the Grafana dashboard, training-log checks, and alert
delivery to webhooks. Everything here but `sensor.py` is plain Python, tested without Dagster."""
