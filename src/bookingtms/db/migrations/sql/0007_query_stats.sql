-- 0007: pg_stat_statements (being built: issue 5)
SELECT 1;
