-- Alerts of every use case: one row per alert_id (the contract's `alerts`
-- event), inserted when the episode fires and updated when it resolves.
-- Timestamps are UTC. JSON columns hold the event's objects as JSON text.
CREATE TABLE alerts (
    alert_id         VARCHAR(64)  NOT NULL PRIMARY KEY,
    status           VARCHAR(16)  NOT NULL,   -- firing | resolved
    severity         VARCHAR(16)  NOT NULL,   -- info | warning | critical
    use_case         VARCHAR(16)  NOT NULL,   -- infra | store | forecast | recon | menu
    rule             VARCHAR(32)  NOT NULL,   -- first rule that confirmed the episode
    rules            JSON         NULL,       -- all rules that confirmed it
    entity           JSON         NOT NULL,   -- e.g. {"resource_id": ..., "metric": ...}
    entity_key       VARCHAR(255) NOT NULL,   -- entity flattened, for filtering in Grafana
    value            DOUBLE       NULL,
    expected_center  DOUBLE       NULL,
    expected_lower   DOUBLE       NULL,
    expected_upper   DOUBLE       NULL,
    zscore           DOUBLE       NULL,
    starts_at        DATETIME(6)  NOT NULL,
    ends_at          DATETIME(6)  NULL,
    summary          TEXT         NULL,
    runbook_url      VARCHAR(512) NULL,
    updated_at       DATETIME(6)  NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE INDEX alerts_starts_at ON alerts (starts_at);
CREATE INDEX alerts_use_case_status ON alerts (use_case, status);
CREATE INDEX alerts_entity_key ON alerts (entity_key);
