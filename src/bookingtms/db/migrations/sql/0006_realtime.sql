-- 0006: NOTIFY on capacity change (being built: issue 5)
SELECT 1;
