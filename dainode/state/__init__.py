"""The node's durable local state (SQLite)."""
