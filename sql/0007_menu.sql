-- UC-PR-01 menu engineering (docs/menu.md). A scope is a store (its store_id)
-- or the whole chain ('chain'). A business day is a calendar day in the
-- chain's time zone (SPCWATCH_MENU_TIMEZONE, default America/New_York); it
-- closes at the next local midnight plus SPCWATCH_MENU_GRACE_SECONDS of event
-- time and is final then. Money is in major units; CM = contribution margin.
-- Rows are written once per closed day (idempotent upserts on the keys).

-- Per scope, day and item: the day's figures over paid orders.
CREATE TABLE menu_item_daily (
    scope             VARCHAR(64)  NOT NULL,
    business_date     DATE         NOT NULL,
    spu               VARCHAR(255) NOT NULL,
    category          VARCHAR(255) NOT NULL,   -- the item's category ('uncategorised' when the order had none)
    name              VARCHAR(255) NOT NULL,
    units             DOUBLE       NOT NULL,   -- quantity sold
    baskets           INT          NOT NULL,   -- paid orders holding the item
    revenue           DOUBLE       NOT NULL,   -- sum of (unit_price - discount) * qty
    list_revenue      DOUBLE       NOT NULL,   -- sum of unit_price * qty
    discount          DOUBLE       NOT NULL,   -- list_revenue - revenue
    cost              DOUBLE       NOT NULL,   -- sum of unit_cost * qty (lines with a unit_cost)
    cm_per_unit       DOUBLE       NULL,       -- realised CM per unit: (revenue - cost) / units, costed lines
    list_cm_per_unit  DOUBLE       NULL,       -- list-price CM per unit: (list_revenue - cost) / units, costed lines
    cm_pct            DOUBLE       NULL,       -- realised CM / revenue (costed lines), 0-1
    discount_depth    DOUBLE       NULL,       -- discount / list_revenue, 0-1
    PRIMARY KEY (scope, business_date, spu)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Per scope, window, day, category and item: the menu-engineering matrix over
-- the window_days business days ending with business_date (Kasavana & Smith:
-- models/menu.py classify_menu). mm_pct and the threshold are percentages;
-- cm is the realised CM per unit over the window; the category's benchmark and
-- popularity line repeat on each of its rows.
CREATE TABLE menu_matrix (
    scope                        VARCHAR(64)  NOT NULL,
    window_days                  INT          NOT NULL,
    business_date                DATE         NOT NULL,
    category                     VARCHAR(255) NOT NULL,
    spu                          VARCHAR(255) NOT NULL,
    name                         VARCHAR(255) NOT NULL,
    units                        DOUBLE       NOT NULL,
    revenue                      DOUBLE       NOT NULL,
    mm_pct                       DOUBLE       NOT NULL,   -- menu mix: units / category units, in percent
    cm                           DOUBLE       NOT NULL,   -- realised CM per unit
    list_cm                      DOUBLE       NULL,       -- list-price CM per unit
    cm_pct                       DOUBLE       NULL,
    discount_depth               DOUBLE       NULL,
    popularity                   VARCHAR(8)   NOT NULL,   -- high | low
    profitability                VARCHAR(8)   NOT NULL,   -- high | low
    menu_class                   VARCHAR(16)  NOT NULL,   -- star | plowhorse | puzzle | dog
    wow_growth                   DOUBLE       NULL,       -- units of the last 7 days / the 7 before - 1
    cmgr                         DOUBLE       NULL,       -- compound monthly growth, first vs last week of the window
    cm_benchmark_value           DOUBLE       NOT NULL,
    popularity_threshold_mm_pct  DOUBLE       NOT NULL,
    n_items                      INT          NOT NULL,
    days_covered                 INT          NOT NULL,   -- days of the window the scope has been seen (< window: warm-up)
    PRIMARY KEY (scope, window_days, business_date, category, spu)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE INDEX menu_matrix_date ON menu_matrix (business_date, window_days);

-- Per scope, window and day: the top item pairs by support (a basket = the
-- distinct items of one paid order). item_a < item_b; _ab is the rule
-- item_a -> item_b, _ba the other way. error_bound: how many baskets n_ab may
-- be short by (the daily pair bound; 0 = exact).
CREATE TABLE menu_pairs (
    scope          VARCHAR(64)  NOT NULL,
    window_days    INT          NOT NULL,
    business_date  DATE         NOT NULL,
    item_a         VARCHAR(255) NOT NULL,
    item_b         VARCHAR(255) NOT NULL,
    pair_rank      INT          NOT NULL,
    n_baskets      INT          NOT NULL,
    n_a            INT          NOT NULL,
    n_b            INT          NOT NULL,
    n_ab           INT          NOT NULL,
    support        DOUBLE       NOT NULL,
    confidence_ab  DOUBLE       NULL,
    confidence_ba  DOUBLE       NULL,
    lift           DOUBLE       NULL,
    leverage       DOUBLE       NULL,
    conviction_ab  DOUBLE       NULL,       -- NULL: infinite (confidence 1)
    conviction_ba  DOUBLE       NULL,
    error_bound    INT          NOT NULL,
    PRIMARY KEY (scope, window_days, business_date, item_a, item_b)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Per scope and closed day: the run log.
CREATE TABLE menu_run_log (
    scope              VARCHAR(64)  NOT NULL,
    business_date      DATE         NOT NULL,
    closed_at          DATETIME(6)  NOT NULL,   -- event time of the close
    orders             INT          NOT NULL,   -- orders (any status) of the day (store scopes); paid baskets (chain)
    baskets            INT          NOT NULL,   -- paid orders with items
    units              DOUBLE       NOT NULL,
    late_ignored       INT          NOT NULL,   -- contributions that reached the stage after the day closed
    pairs_counted      INT          NOT NULL,   -- distinct pairs kept for the day
    pairs_dropped_max  INT          NOT NULL,   -- largest count let go by the daily pair bound (0 = exact)
    PRIMARY KEY (scope, business_date)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
