"""Our panels' SQL as Grafana runs it: macros and template variables expanded, for tests and the bench.

Grafana cannot run on these machines; its MySQL data source's expansion is documented and small, so
the test suite and ``bench/bench_dashboards.py`` run every panel's SQL through this and then on MariaDB.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any


def all_panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", ())


def sql_targets(board: dict[str, Any]) -> list[tuple[str, str, str, str | None]]:
    """(panel title, format, raw SQL, the panel's own relative time) of every MySQL target and annotation."""
    found = [(panel["title"], target["format"], target["rawSql"], panel.get("timeFrom"))
             for panel in all_panels(board) for target in panel.get("targets", ())
             if target.get("datasource", {}).get("type") == "mysql"]
    found += [(f"annotation {a['name']}", "table", a["target"]["rawSql"], None) for a in board["annotations"]["list"]
              if a.get("datasource", {}).get("type") == "mysql"]
    return found


class GrafanaSQL:
    """Grafana's MySQL macro and variable expansion, as its documentation describes it."""

    def __init__(self, start: datetime, end: datetime, interval_seconds: int) -> None:
        self.start, self.end, self.interval = start, end, interval_seconds
        self.variables: dict[str, str] = {}

    @staticmethod
    def _seconds(text: str) -> int:
        number, unit = re.fullmatch(r"'?(\d+)([smhd])'?", text.strip()).groups()  # type: ignore[union-attr]
        return int(number) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit]

    def expand(self, sql: str) -> str:
        frm, to = int(self.start.timestamp()), int(self.end.timestamp())

        def group(match: re.Match[str], alias: bool) -> str:
            column, interval = (part.strip() for part in match.group(1).split(",", 1))
            step = self.interval if interval == "$__interval" else self._seconds(interval)
            return f"UNIX_TIMESTAMP({column}) DIV {step} * {step}" + (" AS \"time\"" if alias else "")

        sql = re.sub(r"\$__timeGroupAlias\(([^)]*)\)", lambda m: group(m, True), sql)
        sql = re.sub(r"\$__timeGroup\(([^)]*)\)", lambda m: group(m, False), sql)
        sql = re.sub(r"\$__timeFilter\((\w+(?:\.\w+)?)\)",
                     rf"\1 BETWEEN FROM_UNIXTIME({frm}) AND FROM_UNIXTIME({to})", sql)
        sql = sql.replace("$__timeFrom()", f"FROM_UNIXTIME({frm})").replace("$__timeTo()", f"FROM_UNIXTIME({to})")
        sql = sql.replace("$__interval", f"'{self.interval}s'")

        def variable(match: re.Match[str]) -> str:
            name, fmt = match.group(1), match.group(2)
            value = self.variables[name]
            if fmt == "sqlstring":
                return "'" + value.replace("'", "''") + "'"
            assert fmt == "raw", f"a variable format this test does not know: {match.group(0)}"
            return value

        sql = re.sub(r"\$\{(\w+):(\w+)\}", variable, sql)
        assert "$" not in sql.replace("'$.", ""), f"an unexpanded macro or variable: {sql}"
        return sql


def relative(expr: str, now: datetime) -> datetime:
    if expr == "now":
        return now
    number, unit = re.fullmatch(r"now-(\d+)([mhd])", expr).groups()  # type: ignore[union-attr]
    return now - timedelta(**{{"m": "minutes", "h": "hours", "d": "days"}[unit]: int(number)})


def choose_variables(query: Callable[[str], list[tuple[Any, ...]]], board: dict[str, Any], grafana: GrafanaSQL) -> None:
    """Each variable as a user would first see it: the first value its own query offers."""
    for variable in board["templating"]["list"]:
        name = variable["name"]
        if variable["type"] == "query" and variable.get("includeAll"):
            grafana.variables[name] = variable["allValue"]  # "All", what Grafana selects first
        elif variable["type"] == "query":
            rows = query(grafana.expand(variable["query"]))
            assert rows, f"variable {name} offers nothing: {variable['query']}"
            grafana.variables[name] = str(rows[0][0])
        elif variable["type"] == "custom":
            grafana.variables[name] = variable["query"].split(",")[0]
        else:
            grafana.variables[name] = variable["query"]
