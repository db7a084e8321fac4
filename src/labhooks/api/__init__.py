"""The HTTP API (SPEC §7) under API_PREFIX: thin handlers over labhooks.services, one router
module per resource, problem documents for errors."""

API_PREFIX = "/api/v1"
