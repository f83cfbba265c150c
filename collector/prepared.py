"""The hot path's statements built by the ORM once and run again with new values: no query building per request.

Building a statement costs the ORM some 0.3 ms a query, several times what SQLite takes to run it;
a small call through the collector makes three or four of them. ``PreparedSelect`` compiles a
queryset the first time it is asked for with a given number of values, keeps its SQL and the
backend's converters, and later runs that SQL with the new values; ``insert`` writes one new row
with the columns and values the ORM would write, without a compiler. Both go through Django's
connection (its per-thread connection, transactions and query logging), so they behave the same on
SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from django.db import connections, models

M = TypeVar("M", bound=models.Model)
# A statement is kept for up to this many values (node ids asked); a longer list is built each time.
KEPT_SHAPES = 32


class PreparedSelect(Generic[M]):
    """``build(*values)`` (a queryset of whole rows) compiled once per number of values, then reused.

    ``values`` must be the query's parameters in order: this is checked when it is compiled, and a
    queryset whose parameters differ (a constant of its own, a transformed value) is refused.
    """

    def __init__(self, build: Callable[..., models.QuerySet[M]]) -> None:
        self.build = build
        self._compiled: dict[tuple[str, int], _Compiled] = {}

    def _compile(self, db: str, values: Sequence[Any]) -> _Compiled:
        queryset = self.build(*values)
        compiler = queryset.query.get_compiler(using=db)
        sql, params = compiler.as_sql()
        if list(params) != list(values):
            raise ValueError(f"the query's parameters {params!r} are not the values given {values!r}")
        columns = [column for column, _, _ in compiler.select]
        converters = [
            (position, converters, column)
            for position, (converters, column) in compiler.get_converters(columns).items()
        ]
        return _Compiled(sql, [column.target.attname for column in columns], converters, queryset.model)

    def rows(self, *values: Any, db: str = "default") -> list[M]:
        """The instances of the rows the queryset finds for ``values``."""
        connection = connections[db]
        key = (connection.vendor, len(values))
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = self._compile(db, values)
            if len(values) <= KEPT_SHAPES:
                self._compiled[key] = compiled
        with connection.cursor() as cursor:
            cursor.execute(compiled.sql, values)
            rows = cursor.fetchall()
        found = []
        for row in rows:
            if compiled.converters:
                row = list(row)
                for position, converters, column in compiled.converters:
                    for converter in converters:
                        row[position] = converter(row[position], column, connection)
            found.append(compiled.model.from_db(db, compiled.names, row))
        return found


@dataclass(frozen=True)
class _Compiled:
    sql: str
    names: list[str]
    converters: list[tuple[int, list, Any]]  # (column, the backend's and field's converters, column)
    model: Any


_INSERTS: dict[tuple[str, type[models.Model]], tuple[str, list[models.Field]]] = {}


def insert(instance: models.Model, db: str = "default") -> None:
    """Write ``instance`` as a new row (its fields as the ORM saves them) and set its primary key.

    No signals are sent: this is for rows nothing listens to (the request log).
    """
    model = type(instance)
    connection = connections[db]
    prepared = _INSERTS.get((connection.vendor, model))
    if prepared is None:
        meta = model._meta
        fields = [field for field in meta.concrete_fields if not field.primary_key]
        quote = connection.ops.quote_name
        columns = ", ".join(quote(field.column) for field in fields)
        marks = ", ".join(["%s"] * len(fields))
        sql = f"INSERT INTO {quote(meta.db_table)} ({columns}) VALUES ({marks}) RETURNING {quote(meta.pk.column)}"
        prepared = _INSERTS[(connection.vendor, model)] = (sql, fields)
    sql, fields = prepared
    values = [field.get_db_prep_save(field.pre_save(instance, True), connection) for field in fields]
    with connection.cursor() as cursor:
        cursor.execute(sql, values)
        (instance.pk,) = cursor.fetchone()
    instance._state.adding = False
    instance._state.db = db
