"""Registries: the OCI distribution API (client, transport), credentials, registries.conf."""
