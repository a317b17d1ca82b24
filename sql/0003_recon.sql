-- UC-FN-02 three-way revenue reconciliation (orders, payments, ledger).
-- Money is integer minor units of `currency` (USD cents, JPY yen, KWD fils).
-- Timestamps are UTC event times. business_day is the local date of the
-- order in the store's time zone (orphans: first event, store UNKNOWN).
-- Rows are upserted on their natural keys, so re-reading the topics rewrites
-- the same rows. Category ids and outcomes: docs/recon.md.

-- One row per (order, category): the contract's reconciliation exceptions.
-- An exception opens at its deadline (event time) and a late arrival resolves
-- it: status becomes resolved, resolved_at and last_seen are the arrival's ts.
-- Age: resolved ones have age_seconds, an open one is as old as now - first_seen.
CREATE TABLE recon_exceptions (
    order_id              VARCHAR(128) NOT NULL,
    category              VARCHAR(32)  NOT NULL,   -- missing_payment, orphan_ledger, duplicate, ...
    status                VARCHAR(16)  NOT NULL,   -- open | resolved
    store_id              VARCHAR(64)  NOT NULL,   -- UNKNOWN while no order is known
    business_day          DATE         NOT NULL,
    currency              VARCHAR(3)   NOT NULL,
    amount_minor          BIGINT       NOT NULL,   -- amount at stake (unmatched amount)
    order_minor           BIGINT       NULL,       -- order total as the orders source says
    payments_minor        BIGINT       NULL,       -- captured payments, order currency
    payments_refund_minor BIGINT       NULL,       -- refunded payments
    ledger_minor          BIGINT       NULL,       -- revenue entries
    ledger_refund_minor   BIGINT       NULL,       -- refund entries
    variance_minor        BIGINT       NULL,       -- source minus order total where compared
    detail                VARCHAR(255) NULL,
    first_seen            DATETIME(6)  NOT NULL,   -- opened (a deadline or the event that caused it)
    last_seen             DATETIME(6)  NOT NULL,   -- last transition
    resolved_at           DATETIME(6)  NULL,
    age_seconds           DOUBLE       NULL,       -- resolved_at - first_seen
    PRIMARY KEY (order_id, category)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE INDEX recon_exceptions_day ON recon_exceptions (business_day, store_id);
CREATE INDEX recon_exceptions_status ON recon_exceptions (status, category);

-- One row per order once it is decided (matched, matched within tolerance,
-- exception, excluded): the matches, and the input of the daily summary.
CREATE TABLE recon_orders (
    order_id               VARCHAR(128) NOT NULL PRIMARY KEY,
    store_id               VARCHAR(64)  NOT NULL,
    business_day           DATE         NOT NULL,
    currency               VARCHAR(3)   NOT NULL,
    outcome                VARCHAR(32)  NOT NULL,  -- matched | matched_within_tolerance | pending | exception | excluded
    order_status           VARCHAR(16)  NULL,      -- paid | refunded | cancelled (NULL: no order)
    order_minor            BIGINT       NULL,
    payments_minor         BIGINT       NULL,
    payments_refund_minor  BIGINT       NULL,
    ledger_minor           BIGINT       NULL,
    ledger_refund_minor    BIGINT       NULL,
    payment_variance_minor BIGINT       NULL,      -- captured - total, when matched
    ledger_variance_minor  BIGINT       NULL,      -- revenue - total, when matched
    open_categories        VARCHAR(255) NULL,      -- comma-separated open exception categories
    test_events            INT          NOT NULL,  -- excluded test records seen for this order
    test_minor             BIGINT       NOT NULL,
    first_seen             DATETIME(6)  NOT NULL,
    last_event             DATETIME(6)  NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE INDEX recon_orders_day ON recon_orders (business_day, store_id);

-- Daily summary per store, business day and currency: totals per source,
-- matches, match rate (matched / decided orders), exceptions and the amount of
-- their orders (unmatched_minor), excluded test data.
CREATE VIEW recon_daily AS
SELECT store_id, business_day, currency,
       SUM(CASE WHEN outcome <> 'excluded' THEN 1 ELSE 0 END) AS orders,
       SUM(COALESCE(order_minor, 0)) AS order_minor,
       SUM(COALESCE(payments_minor, 0)) AS payments_minor,
       SUM(COALESCE(ledger_minor, 0)) AS ledger_minor,
       SUM(CASE WHEN outcome IN ('matched', 'matched_within_tolerance') THEN 1 ELSE 0 END) AS matched,
       SUM(CASE WHEN outcome IN ('matched', 'matched_within_tolerance') THEN order_minor ELSE 0 END) AS matched_minor,
       SUM(CASE WHEN outcome = 'matched_within_tolerance' THEN 1 ELSE 0 END) AS matched_within_tolerance,
       SUM(CASE WHEN outcome = 'exception' THEN 1 ELSE 0 END) AS exceptions,
       SUM(CASE WHEN outcome = 'exception'
                THEN COALESCE(order_minor, payments_minor, ledger_minor, 0) ELSE 0 END) AS unmatched_minor,
       1.0 * SUM(CASE WHEN outcome IN ('matched', 'matched_within_tolerance') THEN 1 ELSE 0 END)
           / NULLIF(SUM(CASE WHEN outcome IN ('matched', 'matched_within_tolerance', 'exception')
                             THEN 1 ELSE 0 END), 0) AS match_rate,
       SUM(test_events) AS test_events,
       SUM(test_minor) AS test_minor
FROM recon_orders
GROUP BY store_id, business_day, currency;

-- Unmatched amount per store, business day, category and status.
CREATE VIEW recon_daily_exceptions AS
SELECT store_id, business_day, currency, category, status,
       COUNT(*) AS exceptions,
       SUM(amount_minor) AS amount_minor
FROM recon_exceptions
GROUP BY store_id, business_day, currency, category, status;
