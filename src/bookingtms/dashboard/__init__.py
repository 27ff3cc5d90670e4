"""Staff dashboard statistics, read from daily roll-ups kept in the booking transaction."""
