"""Stage 3 (one key): every store's day against its peers, chain-wide episodes, the published alerts."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from ..calendar import next_day
from ..config import DAY
from .config import _EPOCH, _RULE_ORDER, MEDIAN_SE, METRICS, Calendar, StoreConfig, _f
from .day import poisson_cdf


def robust_z(x: float, others: list[float], floor: float) -> float | None:
    """(x - median) / (1.4826 MAD) against the peers' same-day values."""
    if len(others) < 2:
        return None
    med = statistics.median(others)
    mad = statistics.median(abs(o - med) for o in others) * 1.4826
    return (x - med) / max(mad, floor)


@dataclass(slots=True)
class ChainOut:
    """Alert transitions (plain dicts, see :func:`ChainState._alert`) and table rows."""

    alerts: list[dict] = field(default_factory=list)
    peer_rows: list[dict] = field(default_factory=list)
    flag_rows: list[dict] = field(default_factory=list)


class ChainState:
    """All stores' day summaries and intraday checks; peer comparison and chain-level alerts.

    A day is *decided* when the order sources' low watermark (``horizon``, from
    the order stage) has passed the day's close, so no store unknown so far can
    still appear in it, and every store on the roster has reported it (or has
    reported a later day: it skipped this one, e.g. after losing its state).
    There is no time-out: how unevenly the stage partitions progress changes
    when a day is decided, never what. A decision depends only on that day's
    summaries and the previous day's decision, so when a summary changes (late
    data) the day and the decided days after it are re-decided and only the
    differences are published; an alert that no longer holds is resolved as
    withdrawn.
    """

    def __init__(self, cal: Calendar) -> None:
        self.cal = cal
        self.roster: dict[str, list] = {}  # store -> [first day, retired from day or None]
        self.sums: dict[str, dict[str, dict]] = {}  # day -> store -> summary
        self.decided: dict[str, dict] = {}  # day -> decision
        self.intra: dict[str, dict[str, dict[str, dict]]] = {}  # day -> slot -> store -> check
        self.intra_done: dict[str, int] = {}  # day -> last decided slot
        self.intra_fired: dict[str, dict[str, dict]] = {}  # day -> entity -> alert (firing)
        self.intra_active: dict[str, list[str]] = {}  # day -> stores sending intraday checks
        self.intra_cold: dict[str, list[str]] = {}  # day -> stores that said they send none
        self.last_day: dict[str, str] = {}  # store -> newest day it has reported
        self.horizon = math.inf  # order sources' low watermark (memory, set by the caller per message)
        self._closes: dict[str, float] = {}

    def to_state(self) -> dict:
        return {"roster": self.roster, "sums": self.sums, "dec": self.decided, "intra": self.intra,
                "idone": self.intra_done, "ifired": self.intra_fired, "iact": self.intra_active,
                "icold": self.intra_cold, "last": self.last_day}

    @classmethod
    def from_state(cls, s: dict, cal: Calendar) -> ChainState:
        c = cls(cal)
        c.roster, c.sums, c.decided = s["roster"], s["sums"], s["dec"]
        c.intra, c.intra_done, c.intra_fired, c.intra_active = s["intra"], s["idone"], s["ifired"], s["iact"]
        c.intra_cold = s.get("icold", {})
        c.last_day = s.get("last", {})
        return c

    def _close_all(self, day: str) -> float:
        """The latest close of ``day`` over every configured time zone (any store's day is over)."""
        ts = self._closes.get(day)
        if ts is None:
            if len(self._closes) > 1000:
                self._closes.clear()
            stores = ["", *(st for st, _ in self.cfg.store_timezones)]
            ts = self._closes[day] = max(self.cal.close_ts(st, day) for st in stores)
        return ts

    # -- roster -------------------------------------------------------------------
    def _join(self, store: str, day: str) -> None:
        entry = self.roster.get(store)
        if entry is None:
            self.roster[store] = [day, None]
        elif day < entry[0]:
            entry[0] = day

    def _expected(self, day: str) -> list[str]:
        return sorted(s for s, (first, gone) in self.roster.items() if first <= day and (gone is None or day < gone))

    # -- input ------------------------------------------------------------------
    def apply(self, msg: dict, horizon: float = math.inf) -> ChainOut:
        """One message: a day summary, an intraday check, a store joining, or an order-source clock.

        ``horizon``: event time up to which every order source has been seen (joins included), so no
        store unknown so far can have orders before it; ``inf`` when the caller has a single source
        in time order (then a summary cannot overtake its store's join)."""
        out = ChainOut()
        self.horizon = horizon
        if msg["t"] == "day":
            self._day_summary(msg, out)
        elif msg["t"] == "join":
            self._join(msg["store"], msg["day"])
            self._decide_ready(out)
        elif msg["t"] == "clock":
            self._decide_intraday(out)
            self._decide_ready(out)
        else:
            self._intraday(msg, out)
        return out

    def _day_summary(self, msg: dict, out: ChainOut) -> None:
        store, day = msg["store"], msg["day"]
        self._join(store, day)
        if msg["retired"]:
            self.roster[store][1] = next_day(day)
        elif self.roster[store][1] is not None and day >= self.roster[store][1]:
            self.roster[store][1] = None
        if day > self.last_day.get(store, ""):
            self.last_day[store] = day
        if self._too_old(day):
            return
        self.sums.setdefault(day, {})[store] = msg
        self._decide_intraday(out)  # a store that closed the day sends no more checks for it
        self._decide_ready(out, changed=day)

    def _too_old(self, day: str) -> bool:
        """Decided and its summaries already forgotten: it can no longer be re-decided."""
        return day in self.decided and day not in self.sums

    def _ready(self, day: str) -> bool:
        if self.horizon < self._close_all(day):
            return False  # an order partition has not passed the close: a store may still join
        got = self.sums.get(day, {})
        need = self._expected(day)
        return bool(need) and all(s in got or self._moved_past(s, day) for s in need)

    def _moved_past(self, store: str, day: str) -> bool:
        """The store reported a later day without this one: it will never report it (days close in order)."""
        return self.last_day.get(store, "") > day

    @property
    def cfg(self) -> StoreConfig:
        return self.cal.cfg

    def _decide_ready(self, out: ChainOut, changed: str | None = None) -> None:
        """Decide every ready day in order; re-decide from ``changed`` if it was decided."""
        days = sorted(self.sums)
        start = None
        if changed is not None and changed in self.decided:
            start = changed
        for day in days:
            if day in self.decided and (start is None or day < start):
                continue
            if day not in self.decided and not self._ready(day):
                break
            self._decide(day, out)
        self._expire()

    def _previous(self, day: str) -> dict | None:
        prev = (date.fromisoformat(day) - timedelta(days=1)).isoformat()
        return self.decided.get(prev)

    def _decide(self, day: str, out: ChainOut) -> None:
        cfg = self.cfg
        prev = self._previous(day) or {}
        sums = self.sums.get(day, {})
        by_group: dict[str, list[dict]] = {}
        for s in sums.values():
            if not s["closed"]:
                by_group.setdefault(s["group"], []).append(s)
        alerts: dict[str, dict] = {}
        peer_flags: dict[str, dict] = {}  # "store|metric" -> {"start": day}
        chain_eps: dict[str, dict] = {}  # group -> {"start": day, "metrics": [...]}
        suppressed: list[str] = list(prev.get("supp", []))
        for group, members in sorted(by_group.items()):
            chain_metrics: dict[str, int] = {}
            for m in METRICS:
                judged = [s for s in members if s["v"].get(m, {}).get("st") == "ok"]
                if len(judged) < cfg.chain_min_stores:
                    continue
                # the typical store's z in standard errors of a median of n in-control z-scores
                typical = (statistics.median(s["v"][m]["z"] or 0.0 for s in judged)
                           * math.sqrt(len(judged)) / MEDIAN_SE)
                for sign in (1, -1):
                    hits = [s for s in judged if s["v"][m]["sig"] and (s["v"][m]["z"] or 0) * sign > 0]
                    # chain-wide: many stores signal, or the typical store is off the same way by chain_z
                    # standard errors (then every store signalling that way is part of it, even if the others
                    # stayed inside their own limits: a -30 % day is 2.6 sigma at each store, 8 at the chain)
                    many = len(hits) >= max(cfg.chain_min_stores, cfg.chain_fraction * len(judged))
                    if hits and (many or typical * sign >= cfg.chain_z):
                        chain_metrics[m] = sign
            for s in sorted(members, key=lambda s: s["store"]):
                self._peer(day, s, members, chain_metrics, prev, peer_flags, alerts, out)
                self._store_alerts(s, chain_metrics, suppressed, alerts)
            pe = prev.get("chain", {}).get(group)
            if chain_metrics:
                metrics = sorted(chain_metrics, key=METRICS.index)
                chain_eps[group] = {"start": pe["start"] if pe else day, "metrics": metrics}
                if not pe:  # one alert per chain episode: published when it starts
                    self._chain_alert(group, day, day, metrics, members, alerts, firing=True)
            elif pe:
                self._chain_alert(group, pe["start"], day, pe["metrics"], members, alerts, firing=False)
        # groups that vanished entirely resolve their chain episodes
        for group, pe in prev.get("chain", {}).items():
            if group not in by_group:
                self._chain_alert(group, pe["start"], day, pe["metrics"], [], alerts, firing=False)
        # intraday alerts of this day end when the day is decided
        for key, a in self.intra_fired.get(day, {}).items():
            if key.startswith("chain|"):
                eps = chain_eps.get(key[6:])
                if eps and eps["start"] == day:
                    continue  # merged into the day's chain episode (same id), which carries on
            ends = self.cal.close_ts(a["store"] or "", day)
            alerts[f"{a['id']}|resolved"] = dict(a, status="resolved", ends_at=ends, event_ts=ends, ts=ends,
                                                 summary=a["summary"] + " [day closed]")
        decision = {"chain": chain_eps, "peer": peer_flags, "supp": suppressed[-500:],
                    "alerts": alerts}
        old = self.decided.get(day)
        self._publish(old["alerts"] if old else {}, alerts, day, out)
        self.decided[day] = decision

    def _store_alerts(self, s: dict, chain_metrics: dict[str, int], suppressed: list[str],
                      alerts: dict[str, dict]) -> None:
        for m in METRICS:
            v = s["v"].get(m)
            if not v:
                continue
            if not v["ev"] and v.get("ep") in suppressed and v["sig"] and not (
                    m in chain_metrics and (v["z"] or 0) * chain_metrics[m] > 0):
                # an episode that began in a chain-wide movement but goes on without it: the store's own alert
                suppressed.remove(v["ep"])
                v = dict(v, ev={"kind": "firing", "id": v["ep"], "rule": v["r"][0] if v["r"] else "WE1",
                                "rules": v["r"], "ts": 0.0, "starts_at": Calendar.model_ts(s["day"]), "ends_at": None,
                                "value": s["m"].get(m), "center": v["c"],
                                "lower": None if v["c"] is None else v["c"] - 3 * v["s"],
                                "upper": None if v["c"] is None else v["c"] + 3 * v["s"], "z": v["z"]})
            if not v["ev"]:
                continue
            ev = v["ev"]
            aid = ev["id"]
            if ev["kind"] == "firing" and m in chain_metrics and (v["z"] or 0) * chain_metrics[m] > 0:
                suppressed.append(aid)  # part of a chain-wide movement: the chain alert covers it
                continue
            if aid in suppressed:
                if ev["kind"] == "resolved":
                    suppressed.remove(aid)
                continue
            alerts[f"{aid}|{ev['kind']}"] = self._alert(
                aid, ev["kind"], ev["rule"], {"store_id": s["store"], "metric": m}, self._real_start(s, ev),
                ev.get("value"), ev.get("center"),
                ev.get("lower"), ev.get("upper"), ev.get("z"), rules=ev["rules"],
                ends_at=s["ts"] if ev["kind"] == "resolved" else None, event_ts=s["ts"],
                summary=(f"{s['store']} {m} {'out of control' if ev['kind'] == 'firing' else 'back in control'} "
                         f"({'+'.join(ev['rules'])}) on {s['day']}: {_num(ev.get('value'))} vs centre "
                         f"{_num(ev.get('center'))}"),
                severity="critical" if ev["rule"] == "WE1" else "warning", store=s["store"], day=s["day"])

    def _real_start(self, s: dict, ev: dict) -> float:
        """Episode start on the real clock: the close of the day the detector's episode started."""
        start_day = (_EPOCH + timedelta(days=int(ev["starts_at"] // DAY))).isoformat()
        return self.cal.close_ts(s["store"], start_day)

    def _peer(self, day: str, s: dict, members: list[dict], chain_metrics: dict[str, int], prev: dict,
              peer_flags: dict[str, dict], alerts: dict[str, dict], out: ChainOut) -> None:
        cfg = self.cfg
        others = [o for o in members if o["store"] != s["store"]]
        for m in METRICS:
            x = s["m"].get(m)
            v = s["v"].get(m, {})
            vals = [o["m"][m] for o in others if o["m"].get(m) is not None]
            z_raw = robust_z(x, vals, 1e-9 + 0.01 * abs(statistics.median(vals))) if x is not None and vals else None
            change = _change(x, v)
            changes = [c for c in (_change(o["m"].get(m), o["v"].get(m, {})) for o in others) if c is not None]
            z_chg = robust_z(change, changes, 0.01) if change is not None else None
            own_normal = v.get("st") == "ok" and not v.get("sig") and not v.get("ep")
            flag = bool(z_chg is not None and abs(z_chg) >= cfg.peer_z and own_normal and m not in chain_metrics
                        and m in cfg.peer_metrics)
            key = f"{s['store']}|{m}"
            before = prev.get("peer", {}).get(key)
            out.peer_rows.append({"store_id": s["store"], "business_date": day, "metric": m, "peer_group": s["group"],
                                  "value": _f(x), "peer_median": _f(statistics.median(vals)) if vals else None,
                                  "peer_z": _f(z_raw), "change_ratio": _f(change), "peer_z_change": _f(z_chg),
                                  "own_signal": bool(v.get("sig")), "peer_flag": flag, "n_peers": len(vals)})
            if flag:
                run = before["run"] + 1 if before else 1
                start = before["start"] if before else day
                opened = bool(before and before["open"]) or run >= cfg.peer_days
                peer_flags[key] = {"run": run, "start": start, "open": opened}
                if opened and not (before and before["open"]):
                    aid = _aid("PEER", s["store"], m, start)
                    alerts[f"{aid}|firing"] = self._alert(
                        aid, "firing", "PEER", {"store_id": s["store"], "metric": m}, s["ts"], x,
                        _f(statistics.median(vals)) if vals else None, None, None, z_chg, event_ts=s["ts"],
                        summary=(f"{s['store']} {m} departs from its peers ({s['group']}) since {start} while its "
                                 f"own chart is in control: change {_pct(change)} against its usual level, "
                                 f"robust z {_num(z_chg)} against the peers' changes"),
                        severity="warning", store=s["store"], day=day)
            elif before and before["open"]:
                aid = _aid("PEER", s["store"], m, before["start"])
                alerts[f"{aid}|resolved"] = self._alert(
                    aid, "resolved", "PEER", {"store_id": s["store"], "metric": m},
                    self.cal.close_ts(s["store"], before["start"]), x, None, None, None, z_chg, ends_at=s["ts"],
                    event_ts=s["ts"], summary=f"{s['store']} {m} back in line with its peers on {day}",
                    severity="warning", store=s["store"], day=day)
            out.flag_rows.append({"store_id": s["store"], "business_date": day, "metric": m,
                                  "status": v.get("st", "closed"), "rules": v.get("r", []),
                                  "own_signal": bool(v.get("sig")), "peer_flag": flag,
                                  "chain_flag": m in chain_metrics and bool(v.get("sig")),
                                  "zscore": _f(v.get("z")), "episode_id": (v.get("ev") or {}).get("id")})

    def _chain_alert(self, group: str, start: str, day: str, metrics: list[str], members: list[dict],
                     alerts: dict[str, dict], firing: bool) -> None:
        aid = _aid("CHAIN", group, start)
        ts = max((s["ts"] for s in members), default=self.cal.close_ts("", day))
        m0 = metrics[0]
        rules: set[str] = set()
        values = []
        zs = []
        for s in members:
            v = s["v"].get(m0, {})
            if v.get("sig"):
                rules.update(v["r"])
            if s["m"].get(m0) is not None and v.get("c"):
                values.append(s["m"][m0] / v["c"] - 1.0)
            if v.get("st") == "ok" and v.get("z") is not None:
                zs.append(v["z"])
        if firing and len(zs) >= 2 and abs(statistics.median(zs)) * math.sqrt(len(zs)) / MEDIAN_SE > 3.0:
            # WE1 of the chain itself: the typical store's z is beyond 3 standard errors of a median of
            # n in-control z-scores (1.2533/sqrt(n)), even when no single store crossed its own line
            rules.add("WE1")
        intraday = self.intra_fired.get(start, {}).get(f"chain|{group}")
        rule_list = (["INTRADAY"] if intraday else []) + sorted(rules, key=lambda r: _RULE_ORDER.get(r, 99))
        rule = rule_list[0] if rule_list else "WE1"
        median_change = statistics.median(values) if values else None
        starts = intraday["starts_at"] if intraday else self.cal.close_ts(members[0]["store"] if members else "",
                                                                             start)
        if firing:
            summary = (f"chain-wide movement in peer group {group} on {day}: {', '.join(metrics)} "
                       f"(median change {_pct(median_change)} across {len(members)} stores); "
                       f"store alerts for these metrics are folded into this one")
        else:
            summary = f"chain-wide movement in peer group {group} is over on {day}"
        alerts[f"{aid}|{'firing' if firing else 'resolved'}"] = self._alert(
            aid, "firing" if firing else "resolved", rule, {"metric": m0, "peer_group": group}, starts,
            median_change, 0.0, None, None, None, rules=rule_list or [rule], ends_at=None if firing else ts,
            event_ts=ts, summary=summary, severity="warning", store=None, day=day)

    @staticmethod
    def _alert(aid: str, status: str, rule: str, entity: dict, starts_at: float, value: float | None,
               center: float | None, lower: float | None, upper: float | None, z: float | None, *,
               rules: list[str] | None = None, ends_at: float | None = None, event_ts: float | None = None,
               summary: str = "", severity: str = "warning", store: str | None = None,
               day: str | None = None) -> dict:
        return {"id": aid, "status": status, "rule": rule, "rules": list(rules or [rule]), "entity": entity,
                "starts_at": starts_at, "ends_at": ends_at, "value": _f(value), "center": _f(center),
                "lower": _f(lower), "upper": _f(upper), "z": _f(z), "summary": summary, "severity": severity,
                "event_ts": event_ts, "store": store, "day": day, "ts": event_ts or starts_at}

    def _publish(self, old: dict[str, dict], new: dict[str, dict], day: str, out: ChainOut) -> None:
        for key, a in new.items():
            if old.get(key) != a:
                out.alerts.append(a)
        for key, a in old.items():
            if key not in new and a["status"] == "firing":
                out.alerts.append(dict(a, status="resolved", ends_at=a["ts"],
                                       summary=a["summary"] + " [withdrawn: late data amended the day]"))

    # -- intraday ---------------------------------------------------------------
    def _intraday(self, msg: dict, out: ChainOut) -> None:
        day, k = msg["day"], msg["k"]
        if self._too_old(day) or day in self.decided:
            return
        self._join(msg["store"], day)
        if not msg.get("warm", True):  # the store sends no checks for this day: do not wait for it
            cold = self.intra_cold.setdefault(day, [])
            if msg["store"] not in cold:
                cold.append(msg["store"])
        elif k > self.intra_done.get(day, 0):
            self.intra.setdefault(day, {}).setdefault(str(k), {})[msg["store"]] = msg
            active = self.intra_active.setdefault(day, [])
            if msg["store"] not in active:
                active.append(msg["store"])
        self._decide_intraday(out)

    def _decide_intraday(self, out: ChainOut) -> None:
        """Decide, in order, every intraday slot all its stores have reported."""
        for d in sorted(self.intra):
            slots = self.intra[d]
            for ks in sorted(slots, key=int):
                kk = int(ks)
                if kk <= self.intra_done.get(d, 0):
                    continue
                got = slots[ks]
                # wait for every store of the roster (stage partitions progress unevenly in the worker, and
                # deciding without a store would lose its flag), unless it said it sends no checks for this
                # day, or it has closed the day (it sent all its checks first) or a later one
                closed = self.sums.get(d, {})
                cold = self.intra_cold.get(d, ())
                missing = [s for s in self._expected(d) if s not in cold and s not in got and s not in closed
                           and not self._moved_past(s, d)]
                if missing:
                    break
                self._decide_slot(d, kk, got, out)
                self.intra_done[d] = kk
        for d in list(self.intra):
            for ks in list(self.intra[d]):
                if int(ks) <= self.intra_done.get(d, 0):
                    del self.intra[d][ks]

    def _decide_slot(self, day: str, k: int, checks: dict[str, dict], out: ChainOut) -> None:
        cfg = self.cfg
        fired = self.intra_fired.setdefault(day, {})
        by_group: dict[str, list[dict]] = {}
        for c in checks.values():
            by_group.setdefault(c["group"], []).append(c)
        for group, cs in sorted(by_group.items()):
            flagged = sorted((c for c in cs if c["flag"]), key=lambda c: c["store"])
            ckey = f"chain|{group}"
            if len(flagged) >= max(cfg.chain_min_stores, cfg.chain_fraction * len(cs)):
                if ckey not in fired:
                    aid = _aid("CHAIN", group, day)
                    a = self._alert(aid, "firing", "INTRADAY", {"metric": "net_revenue", "peer_group": group},
                                    flagged[0]["ts"], None, None, None, None, None, event_ts=flagged[0]["ts"],
                                    summary=(f"chain-wide: {len(flagged)} of {len(cs)} stores in {group} are heading "
                                             f"for a revenue miss on {day}"),
                                    severity="warning", store=None, day=day)
                    fired[ckey] = a
                    out.alerts.append(a)
                continue
            if ckey in fired:
                continue  # the chain alert already covers this group's day
            for c in flagged:
                if c["store"] in fired or self._low_with_its_peers(c, cs):
                    continue
                aid = _aid("INTRADAY", c["store"], day)
                a = self._alert(aid, "firing", "INTRADAY", {"store_id": c["store"], "metric": "net_revenue"},
                                c["ts"], c["projected"], c["center"], c["lower"], None, None, event_ts=c["ts"],
                                summary=(f"{c['store']} heading for a revenue miss on {day}: {c['cum']:.2f} so far, "
                                         f"{c['recent']} orders in the last hour (expected {c['recent_expected']}), "
                                         f"projected {c['projected']:.2f} < lower limit {c['lower']:.2f}"),
                                severity="critical", store=c["store"], day=day)
                fired[c["store"]] = a
                out.alerts.append(a)

    def _low_with_its_peers(self, check: dict, group: list[dict]) -> bool:
        """Is a flagged store's recent order rate low only as much as its peers' are?

        In a chain-wide dip the first stores to look significantly low are flagged
        before the group reaches ``chain_fraction``; judged against the peers' recent
        rate (median of seen / expected, the store left out) instead of its own
        history, such a store is in line, and the chain alert covers the day. A store
        that stopped trading is low against any peer rate."""
        cfg = self.cfg
        peers = [c["recent"] / c["recent_expected"] for c in group
                 if c is not check and c.get("recent_expected", 0) > 0]
        if len(peers) < cfg.chain_min_stores - 1:
            return False
        rate = min(1.0, statistics.median(peers))
        lam, gap = check["recent_expected"] * rate, check.get("gap_expected", 0.0) * rate
        # the store's own two tests (_intraday_until), at the peers' rate instead of its usual one
        low_window = lam >= cfg.intraday_min_expected and poisson_cdf(check["recent"], lam) < cfg.intraday_p
        silent = gap >= cfg.intraday_min_expected and math.exp(-gap) < cfg.intraday_p
        return not (low_window or silent)

    # -- housekeeping -------------------------------------------------------------
    def _expire(self) -> None:
        if not self.decided:
            return
        newest = max(self.decided)
        keep_from = (date.fromisoformat(newest) - timedelta(days=self.cfg.decision_retention_days)).isoformat()
        amend_days = math.ceil((self.cfg.grace_seconds + self.cfg.max_lateness_seconds) / DAY) + 2
        sums_from = (date.fromisoformat(newest) - timedelta(days=amend_days)).isoformat()
        for d in [d for d in self.decided if d < keep_from]:
            del self.decided[d]
        for d in [d for d in self.sums if d < sums_from and d in self.decided]:
            del self.sums[d]
        for d in [d for d in self.intra_fired if d < sums_from]:
            del self.intra_fired[d]
        for d in [d for d in self.intra if d < sums_from]:
            del self.intra[d]
            self.intra_done.pop(d, None)
        for d in [d for d in self.intra_done if d < sums_from]:
            del self.intra_done[d]
        for d in [d for d in self.intra_active if d < sums_from]:
            del self.intra_active[d]
        for d in [d for d in self.intra_cold if d < sums_from]:
            del self.intra_cold[d]


def _change(x: float | None, v: dict) -> float | None:
    """Relative change against the store's own expected level (comparable across store sizes)."""
    c = v.get("c") if v else None
    if x is None or c is None or abs(c) < 1e-9:
        return None
    return x / c - 1.0


def _aid(*parts: Any) -> str:
    from hashlib import blake2b

    return blake2b(repr(("store", *parts)).encode(), digest_size=12).hexdigest()


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4g}"


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 100:+.1f}%"
