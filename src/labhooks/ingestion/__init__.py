"""Getting events in from devices: bridges from MQTT and OPC UA (LADS) that publish through the
public API with a publish-only token, and a simulator of lab devices for demos and tests."""
