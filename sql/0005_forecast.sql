-- UC-SC-01 demand-forecast accuracy (agents/forecast.py, models/forecast.py, docs/forecast.md).
-- Written by the stream, per store: daily accuracy per item, rolling summaries per
-- (store, SKU) and per store, a run log of day closes, late events. Chain-wide and
-- per-SKU-across-stores metrics span Kafka partitions, so they are views over the
-- per-item rows (for Grafana), not stream state.
-- Conventions: error = forecast - actual (positive = over-forecast). APE = |error| / |actual|,
-- NULL when actual = 0 (excluded from MAPE and accuracy rate, counted as zero actuals).
-- business_day is the store's local business date as given in the events. day_num is
-- that date as days since 1970-01-01 (portable date arithmetic for the rolling views).
-- Timestamps are UTC.

-- One row per (store, SKU, business day): written when the pair completes, final at day close.
CREATE TABLE forecast_accuracy_daily (
    store_id               VARCHAR(64)  NOT NULL,
    sku                    VARCHAR(64)  NOT NULL,
    business_day           DATE         NOT NULL,
    day_num                INT          NOT NULL,   -- business_day as days since 1970-01-01
    status                 VARCHAR(16)  NOT NULL,   -- paired | missing_actual | missing_forecast
    has_forecast           SMALLINT     NOT NULL,   -- 1 when a forecast counts (coverage numerator)
    forecast_qty           DOUBLE       NULL,       -- latest forecast generated before the day started
    actual_qty             DOUBLE       NULL,
    forecast_generated_at  DATETIME(6)  NULL,
    error                  DOUBLE       NULL,       -- forecast - actual (paired only)
    abs_error              DOUBLE       NULL,
    ape                    DOUBLE       NULL,       -- |error| / |actual|, NULL when actual = 0
    within_tolerance       SMALLINT     NULL,       -- 1 when ape <= tolerance, NULL when ape is NULL
    revisions              INT          NOT NULL,   -- distinct generated_at before the day started
    late_revisions         INT          NOT NULL,   -- generated at or after the day start: recorded, not used
    recorded_at            DATETIME(6)  NOT NULL,   -- highest event ts of the item
    PRIMARY KEY (store_id, sku, business_day)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE INDEX forecast_accuracy_daily_day ON forecast_accuracy_daily (day_num);
CREATE INDEX forecast_accuracy_daily_sku ON forecast_accuracy_daily (sku, day_num);
CREATE INDEX forecast_accuracy_daily_store_sku ON forecast_accuracy_daily (store_id, sku, day_num);

-- Rolling metrics as of a closed business day, over window_days days ending that day.
-- sku = '' is the store roll-up. Ratios are NULL when their denominator is 0.
CREATE TABLE forecast_accuracy_summary (
    store_id            VARCHAR(64)  NOT NULL,
    sku                 VARCHAR(64)  NOT NULL,   -- '' for the whole store
    business_day        DATE         NOT NULL,   -- last day of the window
    window_days         INT          NOT NULL,
    scope               VARCHAR(16)  NOT NULL,   -- store_sku | store
    n_expected          INT          NOT NULL,   -- items with a forecast or an actual
    n_forecast          INT          NOT NULL,
    n_paired            INT          NOT NULL,
    n_missing_actual    INT          NOT NULL,
    n_missing_forecast  INT          NOT NULL,
    n_zero_actual       INT          NOT NULL,   -- paired items with actual = 0 (no APE)
    n_ape               INT          NOT NULL,
    mape                DOUBLE       NULL,       -- mean APE
    wmape               DOUBLE       NULL,       -- sum |A - F| / sum |A|
    bias                DOUBLE       NULL,       -- sum (F - A) / sum A
    accuracy_rate       DOUBLE       NULL,       -- share of APE items within tolerance
    coverage            DOUBLE       NULL,       -- n_forecast / n_expected
    tracking_signal     DOUBLE       NULL,       -- sum (F - A) / mean |F - A|
    sum_abs_error       DOUBLE       NOT NULL,
    sum_abs_actual      DOUBLE       NOT NULL,
    sum_error           DOUBLE       NOT NULL,
    sum_actual          DOUBLE       NOT NULL,
    PRIMARY KEY (store_id, sku, business_day, window_days)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE INDEX forecast_accuracy_summary_day ON forecast_accuracy_summary (business_day, window_days);

-- Run log: one row per store business day closed (the streaming form of the batch job's daily run).
CREATE TABLE forecast_run_log (
    store_id            VARCHAR(64)  NOT NULL,
    business_day        DATE         NOT NULL,
    deadline            DATETIME(6)  NOT NULL,   -- end of day + grace
    closed_by           VARCHAR(16)  NOT NULL,   -- watermark (both feeds passed the deadline) | stall
    n_expected          INT          NOT NULL,
    n_forecast          INT          NOT NULL,
    n_paired            INT          NOT NULL,
    n_missing_forecast  INT          NOT NULL,
    n_missing_actual    INT          NOT NULL,
    n_zero_actual       INT          NOT NULL,
    revisions           INT          NOT NULL,
    late_revisions      INT          NOT NULL,
    late_events         INT          NOT NULL,   -- late events for this day seen before it closed
    mape                DOUBLE       NULL,       -- of this day alone
    wmape               DOUBLE       NULL,       -- of this day alone (the drift series)
    alerts_fired        INT          NOT NULL,
    alerts_resolved     INT          NOT NULL,
    PRIMARY KEY (store_id, business_day)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Events that came after their day's deadline or close: counted, never applied.
CREATE TABLE forecast_late_events (
    store_id      VARCHAR(64)  NOT NULL,
    business_day  DATE         NOT NULL,
    late_events   INT          NOT NULL,
    PRIMARY KEY (store_id, business_day)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Per SKU across all stores, per business day.
CREATE VIEW forecast_sku_daily AS
SELECT sku, business_day, day_num,
       COUNT(*) AS n_expected,
       SUM(has_forecast) AS n_forecast,
       COUNT(error) AS n_paired,
       AVG(ape) AS mape,
       SUM(abs_error) / NULLIF(SUM(CASE WHEN error IS NOT NULL THEN ABS(actual_qty) END), 0) AS wmape,
       SUM(error) / NULLIF(SUM(CASE WHEN error IS NOT NULL THEN actual_qty END), 0) AS bias,
       SUM(within_tolerance) / NULLIF(1e0 * COUNT(within_tolerance), 0) AS accuracy_rate,
       SUM(has_forecast) / (1e0 * COUNT(*)) AS coverage
FROM forecast_accuracy_daily
GROUP BY sku, business_day, day_num;

-- Chain-wide (every store and SKU), per business day. (1e0 makes ratios DOUBLE in MySQL, not DECIMAL(4).)
CREATE VIEW forecast_chain_daily AS
SELECT business_day, day_num,
       COUNT(*) AS n_expected,
       SUM(has_forecast) AS n_forecast,
       COUNT(error) AS n_paired,
       AVG(ape) AS mape,
       SUM(abs_error) / NULLIF(SUM(CASE WHEN error IS NOT NULL THEN ABS(actual_qty) END), 0) AS wmape,
       SUM(error) / NULLIF(SUM(CASE WHEN error IS NOT NULL THEN actual_qty END), 0) AS bias,
       SUM(within_tolerance) / NULLIF(1e0 * COUNT(within_tolerance), 0) AS accuracy_rate,
       SUM(has_forecast) / (1e0 * COUNT(*)) AS coverage
FROM forecast_accuracy_daily
GROUP BY business_day, day_num;

-- Per SKU across stores, rolling over 7 and 28 days ending business_day (same formulas as the stream).
CREATE VIEW forecast_sku_rolling AS
SELECT d.sku, d.business_day, w.window_days,
       COUNT(*) AS n_expected,
       SUM(i.has_forecast) AS n_forecast,
       COUNT(i.error) AS n_paired,
       AVG(i.ape) AS mape,
       SUM(i.abs_error) / NULLIF(SUM(CASE WHEN i.error IS NOT NULL THEN ABS(i.actual_qty) END), 0) AS wmape,
       SUM(i.error) / NULLIF(SUM(CASE WHEN i.error IS NOT NULL THEN i.actual_qty END), 0) AS bias,
       SUM(i.within_tolerance) / NULLIF(1e0 * COUNT(i.within_tolerance), 0) AS accuracy_rate,
       SUM(i.has_forecast) / (1e0 * COUNT(*)) AS coverage,
       SUM(i.error) / NULLIF(SUM(i.abs_error) / NULLIF(COUNT(i.error), 0), 0) AS tracking_signal
FROM (SELECT DISTINCT sku, business_day, day_num FROM forecast_accuracy_daily) d
CROSS JOIN (SELECT 7 AS window_days UNION ALL SELECT 28) w
JOIN forecast_accuracy_daily i
  ON i.sku = d.sku AND i.day_num BETWEEN d.day_num - w.window_days + 1 AND d.day_num
GROUP BY d.sku, d.business_day, w.window_days;

-- Per (store, SKU), rolling over 7 and 28 days ending business_day: the same figures as the
-- store_sku rows of forecast_accuracy_summary, for when SPCWATCH_FORECAST_SKU_SUMMARY_ROWS=false.
CREATE VIEW forecast_store_sku_rolling AS
SELECT d.store_id, d.sku, d.business_day, w.window_days,
       COUNT(*) AS n_expected,
       SUM(i.has_forecast) AS n_forecast,
       COUNT(i.error) AS n_paired,
       AVG(i.ape) AS mape,
       SUM(i.abs_error) / NULLIF(SUM(CASE WHEN i.error IS NOT NULL THEN ABS(i.actual_qty) END), 0) AS wmape,
       SUM(i.error) / NULLIF(SUM(CASE WHEN i.error IS NOT NULL THEN i.actual_qty END), 0) AS bias,
       SUM(i.within_tolerance) / NULLIF(1e0 * COUNT(i.within_tolerance), 0) AS accuracy_rate,
       SUM(i.has_forecast) / (1e0 * COUNT(*)) AS coverage,
       SUM(i.error) / NULLIF(SUM(i.abs_error) / NULLIF(COUNT(i.error), 0), 0) AS tracking_signal
FROM forecast_accuracy_daily d
CROSS JOIN (SELECT 7 AS window_days UNION ALL SELECT 28) w
JOIN forecast_accuracy_daily i
  ON i.store_id = d.store_id AND i.sku = d.sku
 AND i.day_num BETWEEN d.day_num - w.window_days + 1 AND d.day_num
GROUP BY d.store_id, d.sku, d.business_day, w.window_days;

-- Chain-wide, rolling over 7 and 28 days ending business_day.
CREATE VIEW forecast_chain_rolling AS
SELECT d.business_day, w.window_days,
       COUNT(*) AS n_expected,
       SUM(i.has_forecast) AS n_forecast,
       COUNT(i.error) AS n_paired,
       AVG(i.ape) AS mape,
       SUM(i.abs_error) / NULLIF(SUM(CASE WHEN i.error IS NOT NULL THEN ABS(i.actual_qty) END), 0) AS wmape,
       SUM(i.error) / NULLIF(SUM(CASE WHEN i.error IS NOT NULL THEN i.actual_qty END), 0) AS bias,
       SUM(i.within_tolerance) / NULLIF(1e0 * COUNT(i.within_tolerance), 0) AS accuracy_rate,
       SUM(i.has_forecast) / (1e0 * COUNT(*)) AS coverage,
       SUM(i.error) / NULLIF(SUM(i.abs_error) / NULLIF(COUNT(i.error), 0), 0) AS tracking_signal
FROM (SELECT DISTINCT business_day, day_num FROM forecast_accuracy_daily) d
CROSS JOIN (SELECT 7 AS window_days UNION ALL SELECT 28) w
JOIN forecast_accuracy_daily i
  ON i.day_num BETWEEN d.day_num - w.window_days + 1 AND d.day_num
GROUP BY d.business_day, w.window_days;

-- The forecast use case's alerts (rows of the shared alerts table).
CREATE VIEW forecast_alerts AS
SELECT * FROM alerts WHERE use_case = 'forecast';
