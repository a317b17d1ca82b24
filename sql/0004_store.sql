-- UC-OP-02 store performance. A business day is the store's local calendar day
-- (its time zone, default America/New_York); it closes at the next local
-- midnight plus SPCWATCH_STORE_GRACE_SECONDS of event time. Rows of a day are
-- rewritten when late events amend it (until close + max lateness).
-- Timestamps are UTC. Money is in major units of the store's currency.

-- Per store per business day: the daily metrics. NULL where the day had no
-- denominator (no paid orders: no average order value).
CREATE TABLE store_daily_metrics (
    store_id         VARCHAR(64)  NOT NULL,
    business_date    DATE         NOT NULL,
    net_revenue      DOUBLE       NULL,     -- sum of totals of paid orders (refunded and cancelled excluded)
    orders           DOUBLE       NULL,     -- orders placed and not cancelled (paid + refunded)
    aov              DOUBLE       NULL,     -- average order value: net_revenue / paid orders
    items_per_order  DOUBLE       NULL,     -- item quantity / paid orders
    discount_depth   DOUBLE       NULL,     -- discounts / (discounts + net revenue) of paid orders
    refund_rate      DOUBLE       NULL,     -- refunded / (paid + refunded)
    cancel_rate      DOUBLE       NULL,     -- cancelled / all orders
    closed_day       BOOLEAN      NOT NULL, -- marked closed or holiday: kept out of baselines, never alerted
    closed_at        DATETIME(6)  NOT NULL, -- event time at which the day closed
    PRIMARY KEY (store_id, business_date)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE INDEX store_daily_metrics_date ON store_daily_metrics (business_date);

-- Per store, day and metric: the control limits that judged that day (from the
-- previous window of days, day-of-week centres by default). status: ok |
-- warmup | missing. centre/sigma/limits are NULL unless status is ok.
CREATE TABLE store_control_limits (
    store_id       VARCHAR(64)  NOT NULL,
    business_date  DATE         NOT NULL,
    metric         VARCHAR(32)  NOT NULL,
    status         VARCHAR(16)  NOT NULL,
    center         DOUBLE       NULL,
    sigma          DOUBLE       NULL,
    lower          DOUBLE       NULL,       -- centre - 3 sigma
    upper          DOUBLE       NULL,       -- centre + 3 sigma
    window_days    INT          NOT NULL,
    seasonality    VARCHAR(16)  NOT NULL,   -- none | day_of_week
    PRIMARY KEY (store_id, business_date, metric)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Per store, day and metric: how it was judged, against its own history and
-- its peers. own_signal: a rule fired with the minimum effect. chain_flag: the
-- signal was part of a chain-wide movement (one chain-level alert instead).
CREATE TABLE store_anomaly_flags (
    store_id       VARCHAR(64)  NOT NULL,
    business_date  DATE         NOT NULL,
    metric         VARCHAR(32)  NOT NULL,
    status         VARCHAR(16)  NOT NULL,   -- ok | warmup | missing | closed
    rules          JSON         NULL,       -- rules the day completed, e.g. ["WE1","WE4"]
    zscore         DOUBLE       NULL,
    own_signal     BOOLEAN      NOT NULL,
    peer_flag      BOOLEAN      NOT NULL,   -- departs from its peers while its own chart is in control
    chain_flag     BOOLEAN      NOT NULL,
    episode_id     VARCHAR(64)  NULL,       -- the alert episode this day opened or closed, if any
    PRIMARY KEY (store_id, business_date, metric)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE INDEX store_anomaly_flags_date ON store_anomaly_flags (business_date);

-- Per store, day and metric: the store against its peer group's same-day values.
-- peer_z: robust z of the value against the peers (median, 1.4826 MAD), which
-- differ in size; peer_z_change: robust z of the change against the store's own
-- expected level, compared with the peers' changes (what the PEER rule uses).
CREATE TABLE store_peer_comparison (
    store_id       VARCHAR(64)  NOT NULL,
    business_date  DATE         NOT NULL,
    metric         VARCHAR(32)  NOT NULL,
    peer_group     VARCHAR(64)  NOT NULL,
    value          DOUBLE       NULL,
    peer_median    DOUBLE       NULL,
    peer_z         DOUBLE       NULL,
    change_ratio   DOUBLE       NULL,       -- value / own centre - 1
    peer_z_change  DOUBLE       NULL,
    n_peers        INT          NOT NULL,
    own_signal     BOOLEAN      NOT NULL,
    peer_flag      BOOLEAN      NOT NULL,
    PRIMARY KEY (store_id, business_date, metric)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Per store per business day: the run log of the day's processing. Counters
-- are cumulative for the store since the worker's state began.
CREATE TABLE store_run_log (
    store_id         VARCHAR(64)  NOT NULL,
    business_date    DATE         NOT NULL,
    closed_at        DATETIME(6)  NOT NULL,
    orders_seen      INT          NULL,     -- orders (any status) counted for the day when last evaluated
    late_amendments  INT          NOT NULL, -- events that amended an already closed day
    rejected_late    INT          NOT NULL, -- events past close + max lateness (dead-lettered)
    retired          BOOLEAN      NOT NULL, -- no orders for SPCWATCH_STORE_RETIRE_DAYS: days stop closing
    PRIMARY KEY (store_id, business_date)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
