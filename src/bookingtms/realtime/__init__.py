"""Real-time availability: PostgreSQL LISTEN/NOTIFY fanned out as Server-Sent Events."""
