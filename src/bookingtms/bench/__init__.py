"""`bookingtms bench`: data at the spec's scale (seed) and an open-loop HTTP load (run)."""
