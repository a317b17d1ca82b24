-- UC-IT-01 infrastructure monitoring. A series is (resource_id, metric, labels);
-- series_id is a stable hash of that identity (the key the tables share).
-- Timestamps are UTC.

-- Per series per minute: what arrived.
CREATE TABLE infra_metric_rollups (
    series_id    CHAR(24)     NOT NULL,
    minute       DATETIME(6)  NOT NULL,
    resource_id  VARCHAR(255) NOT NULL,
    metric       VARCHAR(255) NOT NULL,
    labels       JSON         NULL,
    sample_count INT          NOT NULL,
    value_mean   DOUBLE       NOT NULL,
    value_min    DOUBLE       NOT NULL,
    value_max    DOUBLE       NOT NULL,
    PRIMARY KEY (series_id, minute)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE INDEX infra_rollups_resource ON infra_metric_rollups (resource_id, minute);

-- Per series per point: how the detector judged it. status: ok | warmup | excluded.
-- centre/sigma/z are NULL while the baseline warms up. rules: the rules this point completed.
CREATE TABLE infra_anomaly_scores (
    series_id    CHAR(24)     NOT NULL,
    ts           DATETIME(6)  NOT NULL,
    resource_id  VARCHAR(255) NOT NULL,
    metric       VARCHAR(255) NOT NULL,
    value        DOUBLE       NOT NULL,
    center       DOUBLE       NULL,
    sigma        DOUBLE       NULL,
    zscore       DOUBLE       NULL,
    rules        JSON         NULL,
    status       VARCHAR(16)  NOT NULL,
    PRIMARY KEY (series_id, ts)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE INDEX infra_scores_resource ON infra_anomaly_scores (resource_id, ts);

-- Per resource per minute: the 0-100 health score (formula in README) and what drove it.
CREATE TABLE infra_health_scores (
    resource_id    VARCHAR(255) NOT NULL,
    minute         DATETIME(6)  NOT NULL,
    resource_type  VARCHAR(64)  NOT NULL,
    score          INT          NOT NULL,
    firing_series  INT          NOT NULL,
    absent         TINYINT      NOT NULL,
    PRIMARY KEY (resource_id, minute)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- One row per resource discovered from the samples. status: active | absent | retired
-- (absent for SPCWATCH_INFRA_RETIRE_AFTER_SECONDS: no longer watched).
CREATE TABLE infra_inventory (
    resource_id    VARCHAR(255) NOT NULL PRIMARY KEY,
    resource_type  VARCHAR(64)  NOT NULL,
    source         VARCHAR(64)  NOT NULL,
    labels         JSON         NULL,
    series_count   INT          NOT NULL,
    first_seen     DATETIME(6)  NOT NULL,
    last_seen      DATETIME(6)  NOT NULL,
    status         VARCHAR(16)  NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE INDEX infra_inventory_type ON infra_inventory (resource_type, status);

-- Operational log of every use case's worker: one row per partition per minute
-- of wall time (processing time, so it differs between runs by design).
CREATE TABLE pipeline_log (
    use_case        VARCHAR(16)  NOT NULL,
    topic_partition INT          NOT NULL,
    logged_at       DATETIME(6)  NOT NULL,
    events          BIGINT       NOT NULL,
    checkpoints     INT          NOT NULL,
    watermark       DATETIME(6)  NULL,
    lag_seconds     DOUBLE       NULL,
    PRIMARY KEY (use_case, topic_partition, logged_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
