"""BookingTMS: multi-tenant booking platform for timed experiences."""

__version__ = "0.1.0"
