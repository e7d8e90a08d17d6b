-- effect-oban migration 7: a placeholder. Number 7 belongs to the unique-jobs work, developed on
-- another branch at the same time; the migration loader requires versions without gaps, so this
-- branch carries an empty script in its place. When the branches are merged, this file is deleted
-- and the unique-jobs migration 7 takes its place (never keep both).

-- migrate:up
SELECT 1;

-- migrate:down
SELECT 1;
