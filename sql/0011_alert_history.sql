-- Alerts caused by backfilled history (spcwatch backfill): an episode that started and ended
-- inside the history is recorded here with history = 1 and is not notified (the alerts event
-- carries "history": true; the Alertmanager forwarder skips it). An episode still open when
-- the history ends is sent again as a live alert (history = 0) by the resource's first live
-- samples (agents/history.py).
ALTER TABLE alerts ADD COLUMN history TINYINT NOT NULL DEFAULT 0;
