-- 0005: dashboard statistics roll-ups (being built: issue 5)
SELECT 1;
