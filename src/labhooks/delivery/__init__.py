"""The delivery engine: workers that claim due deliveries, send them, and record every attempt."""
