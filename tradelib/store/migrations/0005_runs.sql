-- Scheduled and manual notebook runs (`tradelib schedule`, `tradelib run-notebook`): what
-- started the run, which notebook, where it ran, its time limit, and the cell that failed.
-- `scheduled_for` is the cron fire time a scheduled run stands for; the missed-run policy
-- compares it with the schedule after a restart (one catch-up run, never a burst).

ALTER TABLE runs ADD COLUMN triggered_by VARCHAR(20);
ALTER TABLE runs ADD COLUMN scheduled_for TIMESTAMPTZ;
ALTER TABLE runs ADD COLUMN notebook TEXT;
ALTER TABLE runs ADD COLUMN host VARCHAR(255);
ALTER TABLE runs ADD COLUMN pid INTEGER;
ALTER TABLE runs ADD COLUMN timeout_seconds INTEGER;
ALTER TABLE runs ADD COLUMN error_cell INTEGER;
CREATE INDEX runs_name_started ON runs (name, started_at);
