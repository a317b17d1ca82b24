-- UC-IT-01: a series' identity (resource, metric, labels) is stored once, in infra_series,
-- instead of on every row of the two per-point tables. Those take two rows per sample, the
-- bulk of the writes: without the repeated strings and their second index a row costs the
-- database about a third less and the worker a sixth less (bench/README.md).
-- Existing rows are carried over (copy, then swap: the one form MySQL and SQLite share).
-- Read them by resource through the views infra_scores and infra_rollups.

CREATE TABLE infra_series (
    series_id    CHAR(24)     NOT NULL PRIMARY KEY,
    resource_id  VARCHAR(255) NOT NULL,
    metric       VARCHAR(255) NOT NULL,
    labels       JSON         NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE INDEX infra_series_resource ON infra_series (resource_id, metric);

-- Every sample wrote a rollup row, so the rollups know every series; its latest row names it.
INSERT INTO infra_series (series_id, resource_id, metric, labels)
SELECT r.series_id, r.resource_id, r.metric, r.labels
FROM infra_metric_rollups r
JOIN (SELECT series_id, MAX(minute) AS latest FROM infra_metric_rollups GROUP BY series_id) last_row
  ON last_row.series_id = r.series_id AND last_row.latest = r.minute;

CREATE TABLE infra_metric_rollups_0006 (
    series_id    CHAR(24)     NOT NULL,
    minute       DATETIME(6)  NOT NULL,
    sample_count INT          NOT NULL,
    value_mean   DOUBLE       NOT NULL,
    value_min    DOUBLE       NOT NULL,
    value_max    DOUBLE       NOT NULL,
    PRIMARY KEY (series_id, minute)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

INSERT INTO infra_metric_rollups_0006 (series_id, minute, sample_count, value_mean, value_min, value_max)
SELECT series_id, minute, sample_count, value_mean, value_min, value_max FROM infra_metric_rollups;

DROP TABLE infra_metric_rollups;

ALTER TABLE infra_metric_rollups_0006 RENAME TO infra_metric_rollups;

CREATE TABLE infra_anomaly_scores_0006 (
    series_id    CHAR(24)     NOT NULL,
    ts           DATETIME(6)  NOT NULL,
    value        DOUBLE       NOT NULL,
    center       DOUBLE       NULL,
    sigma        DOUBLE       NULL,
    zscore       DOUBLE       NULL,
    rules        JSON         NULL,
    status       VARCHAR(16)  NOT NULL,
    PRIMARY KEY (series_id, ts)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

INSERT INTO infra_anomaly_scores_0006 (series_id, ts, value, center, sigma, zscore, rules, status)
SELECT series_id, ts, value, center, sigma, zscore, rules, status FROM infra_anomaly_scores;

DROP TABLE infra_anomaly_scores;

ALTER TABLE infra_anomaly_scores_0006 RENAME TO infra_anomaly_scores;

-- Per point / per minute with the series' names, for Grafana and people: a filter on
-- resource_id goes through infra_series' index, then the per-point table's primary key.
CREATE VIEW infra_scores AS
SELECT s.resource_id, s.metric, s.labels, a.series_id, a.ts, a.value, a.center, a.sigma, a.zscore,
       a.rules, a.status
FROM infra_anomaly_scores a
JOIN infra_series s ON s.series_id = a.series_id;

CREATE VIEW infra_rollups AS
SELECT s.resource_id, s.metric, s.labels, r.series_id, r.minute, r.sample_count, r.value_mean,
       r.value_min, r.value_max
FROM infra_metric_rollups r
JOIN infra_series s ON s.series_id = r.series_id;
